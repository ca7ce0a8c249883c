from django.apps import AppConfig


class MintsiteConfig(AppConfig):
    name = "mintsite"
    verbose_name = "API and webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from generation import events
        from mintsite import webhooks

        events.subscribe(webhooks.on_events)
