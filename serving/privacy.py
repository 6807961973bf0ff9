"""Masking of personal data, re-exported for serving: the function lives in `ticketflow.components.privacy`.

It moved down a floor so the evaluation report (a component) masks ticket text exactly as the prediction log and
the answers do; imports run one way (components ← monitoring ← serving), so serving re-exports it from there.
"""

from __future__ import annotations

from ticketflow.components.privacy import EMAIL_TOKEN, PHONE_TOKEN, mask_personal_data, snippet

__all__ = ["EMAIL_TOKEN", "PHONE_TOKEN", "mask_personal_data", "snippet"]
