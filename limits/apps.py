from django.apps import AppConfig


class LimitsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "limits"
    verbose_name = "Limits and budgets"

    def ready(self):
        from panels import hooks

        from .spend import keys_with_spend

        # The providers page shows each API key's spend; panels cannot import limits.
        hooks.provide_key_spend(keys_with_spend)
