from django.db import models


class Handled(models.Model):
    """What the user's handler writes: one row per event."""

    event_id = models.CharField(max_length=255)
    type = models.CharField(max_length=255)

    class Meta:
        db_table = "handled"
