from django.apps import AppConfig


class MintsiteConfig(AppConfig):
    name = "mintsite"
    verbose_name = "API and webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings
        from django.core import checks

        from generation import events
        from generation.model_pool import MB, POOL
        from mintsite import notifier, retired_settings, webhooks
        from mintsite.observability import metrics

        events.subscribe(webhooks.on_events)
        # renders, gate verdicts, attempts and transitions, in whichever process commits them
        events.subscribe(metrics.count_events)
        # the warm pool's budget, and its loads, hits and evictions in the metrics
        POOL.set_budget(settings.RENDER_MODEL_MEMORY_MB * MB)
        POOL.subscribe(metrics.count_pool_event)
        # wakes the streams and long polls waiting on those tokens, in every web process
        events.subscribe(notifier.publish_events)
        # a variable the project stopped reading is named, not silently ignored
        checks.register(retired_settings.retired_variables)
