from django.apps import AppConfig


class MintsiteConfig(AppConfig):
    name = "mintsite"
    verbose_name = "API and webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks

        from generation import events
        from mintsite import notifier, retired_settings, webhooks
        from mintsite.observability import metrics

        events.subscribe(webhooks.on_events)
        # renders, gate verdicts, attempts and transitions, in whichever process commits them
        events.subscribe(metrics.count_events)
        # wakes the streams and long polls waiting on those tokens, in every web process
        events.subscribe(notifier.publish_events)
        # a variable the project stopped reading is named, not silently ignored
        checks.register(retired_settings.retired_variables)
