"""The admin site: staff must be verified by a second factor (django-otp) to use it, and its password check is
the brute-force-guarded backend (``apps.accounts.backends``). TOTP/static devices throttle wrong codes themselves.
A signed-in user refused by the admin (a customer, or staff without OTP) is logged on ``django.security``.
"""

import logging
from typing import Any

from django.http import HttpRequest
from django_otp.admin import OTPAdminSite

security_logger = logging.getLogger("django.security.admin")


class BrokerageAdminSite(OTPAdminSite):  # type: ignore[misc]
    site_header = "Brokerage back office"
    site_title = "Brokerage back office"
    index_title = "Back office"

    def has_permission(self, request: HttpRequest) -> bool:
        allowed = bool(super().has_permission(request))
        user: Any = getattr(request, "user", None)
        if not allowed and user is not None and user.is_authenticated:
            security_logger.warning(
                "admin access refused",
                extra={"user_id": str(user.pk), "path": request.path, "method": request.method},
            )
        return allowed
