"""Replaces ``django.contrib.admin`` in INSTALLED_APPS so the default admin site is the OTP-enforcing one.

Kept apart from ``admin_site`` because this module is imported before the app registry is ready.
"""

from django.contrib.admin.apps import AdminConfig


class BrokerageAdminConfig(AdminConfig):
    default_site = "apps.accounts.admin_site.BrokerageAdminSite"
