from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _sync_shipped(sender, **kwargs):
    from .datasets import sync_shipped

    sync_shipped()


class EvalsConfig(AppConfig):
    name = "evals"
    verbose_name = "Evaluations"

    def ready(self):
        from panels import hooks

        from .report import panel_evidence

        # Every `migrate` brings the shipped datasets (evals/data/, HumanEval) in.
        post_migrate.connect(_sync_shipped, sender=self)
        # A panel's page shows its measured quality; panels cannot import evals.
        hooks.provide_panel_evidence(panel_evidence)
