from django.apps import AppConfig


class KycConfig(AppConfig):
    name = "apps.kyc"
    label = "kyc"
