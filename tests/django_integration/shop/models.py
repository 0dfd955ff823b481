"""Models of the integration tests, on tables named for this run (concurrent runs never
share one)."""

from __future__ import annotations

import os
from decimal import Decimal

from django.db import models
from django.utils import timezone

SUFFIX = os.environ.get("VENEER_DJ_SUFFIX", "x")


class Tag(models.Model):
    name = models.CharField(max_length=50)

    class Meta:
        app_label = "shop"
        db_table = f"vdj_tag_{SUFFIX}"


class Item(models.Model):
    name = models.CharField(max_length=100)
    price = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("1.00"))
    created = models.DateTimeField(default=timezone.now)
    tags = models.ManyToManyField(Tag)

    class Meta:
        app_label = "shop"
        db_table = f"vdj_item_{SUFFIX}"
