"""Notifications for incidents: what to send (:mod:`.notifier`), how it reads (:mod:`.render`),
how it goes out (:mod:`.senders`), and what comes back from Slack (:mod:`.approvals`,
:mod:`.feedback`). The webhook payload is documented in ``docs/webhook.md``.

The usual loop, once per tick::

    notes = notifier.observe(incidents, now)
    deliver(notifier, notes, senders, log=logger.warning)
    save(notifier.to_json())
"""

from aiops.notify.approvals import (
    Interaction,
    InteractionError,
    SignatureError,
    approval_links,
    approval_urls,
    decision_id_for,
    handle_slack_interaction,
    parse_interaction,
    verify_slack_signature,
)
from aiops.notify.feedback import FeedbackPolicy, FeedbackStore
from aiops.notify.messages import Delivery, DeliveryError, Flapping, Notification, Suppressed
from aiops.notify.notifier import ChannelConfig, Notifier, NotifierConfig, group_key
from aiops.notify.render import (
    alertmanager_payload,
    slack_blocks,
    slack_flapping_blocks,
    slack_group_blocks,
    slack_limit_violations,
    slack_message,
    slack_summary_blocks,
    webhook_payload,
    webhook_payloads,
    webhook_summary_payload,
)
from aiops.notify.senders import (
    AlertmanagerSender,
    Sender,
    SlackBotSender,
    SlackWebhookSender,
    WebhookSender,
    deliver,
    secret_from_env,
    senders_from_env,
    sign_webhook,
    verify_webhook,
)

__all__ = [
    "AlertmanagerSender", "ChannelConfig", "Delivery", "DeliveryError", "FeedbackPolicy", "FeedbackStore", "Flapping",
    "Interaction", "InteractionError", "Notification", "Notifier", "NotifierConfig", "Sender", "SignatureError",
    "SlackBotSender", "SlackWebhookSender", "Suppressed", "WebhookSender", "alertmanager_payload", "approval_links",
    "approval_urls", "decision_id_for", "deliver", "group_key", "handle_slack_interaction", "parse_interaction",
    "secret_from_env", "senders_from_env", "sign_webhook", "slack_blocks", "slack_flapping_blocks", "slack_group_blocks",
    "slack_limit_violations", "slack_message", "slack_summary_blocks", "verify_slack_signature", "verify_webhook",
    "webhook_payload", "webhook_payloads", "webhook_summary_payload",
]
