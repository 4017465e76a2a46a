"""The evaluation harness's records: datasets, evaluations, the systems compared and
one result per (system, item).

An evaluation is paired: every system answers every item, so two systems can be
compared item by item (McNemar). A result row exists only once its item is
finished — answered and graded, or failed — which is what makes an evaluation
resumable: whatever has no row yet is still to do.
"""

from django.conf import settings
from django.db import models
from django.urls import reverse


class Dataset(models.Model):
    class Kind(models.TextChoices):
        SHORT = "short", "Short answer"
        CHOICE = "choice", "Multiple choice"
        CODE = "code", "Code (tests in the sandbox)"
        RUBRIC = "rubric", "Rubric (graded by a model)"

    # Empty for the datasets shipped with Fusion Room (everyone may use them).
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    slug = models.SlugField(max_length=80)
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    description = models.TextField(blank=True)
    source = models.CharField(max_length=200, blank=True)  # a file name, "upload", a package
    item_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["owner_id", "name"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "slug"], name="dataset_slug_per_owner"),
            models.UniqueConstraint(
                fields=["slug"], condition=models.Q(owner=None), name="shipped_dataset_slug"
            ),
        ]

    def __str__(self):
        return self.name

    @property
    def is_shipped(self) -> bool:
        return self.owner_id is None


class DatasetItem(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveIntegerField()
    key = models.CharField(max_length=120)  # the item's own id in the file
    category = models.CharField(max_length=60, blank=True)
    # The validated fields of its kind (evals/datasets.py says which).
    data = models.JSONField()

    class Meta:
        ordering = ["dataset", "position"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "key"], name="item_key_per_dataset")
        ]

    def __str__(self):
        return self.key


class Evaluation(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        STOPPING = "stopping"
        STOPPED = "stopped"
        DONE = "done"
        FAILED = "failed"

    ACTIVE = (Status.QUEUED, Status.RUNNING, Status.STOPPING)

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="evaluations"
    )
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="evaluations")
    name = models.CharField(max_length=160)
    # How many items were asked for (empty: all), and the ones chosen, frozen when
    # it was created: a later change of the dataset never changes what it measures.
    item_limit = models.PositiveIntegerField(null=True, blank=True)
    item_ids = models.JSONField(default=list, blank=True)
    # The model that grades rubric items; the systems under test never see it.
    grader = models.ForeignKey(
        "panels.CatalogModel", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    grader_config = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    detail = models.TextField(blank=True)  # why it failed or stopped, in words
    total = models.PositiveIntegerField(default=0)  # items × systems
    attempts = models.PositiveSmallIntegerField(default=0)  # starts, resumes included
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Seconds spent working, summed over every start (ETA from it survives resumes).
    busy_s = models.FloatField(default=0)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("evals:detail", args=[self.pk])

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE


class System(models.Model):
    """One contender: a frozen run configuration (panels.models.Panel.snapshot)."""

    class Kind(models.TextChoices):
        SEAT = "seat", "Seat alone"
        STRATEGY = "strategy", "Panel strategy"
        SELF = "self", "Self-fusion"
        PANEL = "panel", "Saved panel"
        MODEL = "model", "Catalog model"

    evaluation = models.ForeignKey(Evaluation, on_delete=models.CASCADE, related_name="systems")
    position = models.PositiveSmallIntegerField()
    label = models.CharField(max_length=160)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    config = models.JSONField()
    # Set when this system is a saved panel as saved: its page shows the result.
    panel = models.ForeignKey(
        "panels.Panel", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    panel_version = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["evaluation", "position"]

    def __str__(self):
        return self.label

    @property
    def is_single_model(self) -> bool:
        return self.kind in (self.Kind.SEAT, self.Kind.MODEL)


class Result(models.Model):
    class Status(models.TextChoices):
        GRADED = "graded"
        ERROR = "error"  # the system failed: counted as an error, never as wrong
        GRADE_ERROR = "grade_error"  # the answer came, the grading failed

    evaluation = models.ForeignKey(Evaluation, on_delete=models.CASCADE, related_name="results")
    system = models.ForeignKey(System, on_delete=models.CASCADE, related_name="results")
    item = models.ForeignKey(DatasetItem, on_delete=models.CASCADE, related_name="+")
    run = models.ForeignKey("chat.Run", null=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=12, choices=Status.choices)
    answer = models.TextField(blank=True)
    correct = models.BooleanField(null=True)
    score = models.FloatField(null=True)  # 0–1 (rubric: weighted share of criteria met)
    grade = models.JSONField(default=dict)  # how it was graded: extracted answer, tests, verdicts
    error = models.TextField(blank=True)
    input_tokens = models.PositiveIntegerField(null=True)
    output_tokens = models.PositiveIntegerField(null=True)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, null=True)
    latency_ms = models.PositiveIntegerField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["system", "item"], name="one_result_per_item")
        ]

    def __str__(self):
        return f"{self.system} on {self.item}: {self.status}"
