"""The admin site: staff must be verified by a second factor (django-otp) to use it, and its password check is
the brute-force-guarded backend (``apps.accounts.backends``). TOTP/static devices throttle wrong codes themselves.
"""

from django_otp.admin import OTPAdminSite


class BrokerageAdminSite(OTPAdminSite):  # type: ignore[misc]
    site_header = "Brokerage back office"
    site_title = "Brokerage back office"
    index_title = "Back office"
