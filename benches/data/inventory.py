"""A small inventory service: items, stock movements and reorder reports."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path


class InventoryError(Exception):
    """Raised when a stock operation cannot be carried out."""


@dataclass
class Item:
    sku: str
    name: str
    unit_price: float
    quantity: int = 0
    reorder_level: int = 10
    tags: list[str] = field(default_factory=list)

    def value(self) -> float:
        return self.unit_price * self.quantity

    def needs_reorder(self) -> bool:
        return self.quantity <= self.reorder_level


@dataclass
class Movement:
    sku: str
    delta: int
    reason: str
    at: datetime


class Inventory:
    def __init__(self) -> None:
        self.items: dict[str, Item] = {}
        self.movements: list[Movement] = []

    def add_item(self, item: Item) -> None:
        if item.sku in self.items:
            raise InventoryError(f"duplicate sku {item.sku}")
        if item.unit_price < 0:
            raise InventoryError(f"negative price for {item.sku}")
        self.items[item.sku] = item

    def get_item(self, sku: str) -> Item:
        try:
            return self.items[sku]
        except KeyError:
            raise InventoryError(f"unknown sku {sku}") from None

    def receive(self, sku: str, count: int, reason: str = "delivery") -> Item:
        if count <= 0:
            raise InventoryError("count must be positive")
        item = self.get_item(sku)
        item.quantity += count
        self._record(sku, count, reason)
        return item

    def ship(self, sku: str, count: int, reason: str = "order") -> Item:
        if count <= 0:
            raise InventoryError("count must be positive")
        item = self.get_item(sku)
        if item.quantity < count:
            raise InventoryError(
                f"only {item.quantity} of {sku} in stock, {count} requested"
            )
        item.quantity -= count
        self._record(sku, -count, reason)
        return item

    def adjust(self, sku: str, new_quantity: int, reason: str = "count") -> Item:
        if new_quantity < 0:
            raise InventoryError("quantity cannot be negative")
        item = self.get_item(sku)
        delta = new_quantity - item.quantity
        item.quantity = new_quantity
        if delta:
            self._record(sku, delta, reason)
        return item

    def _record(self, sku: str, delta: int, reason: str) -> None:
        now = datetime.now(timezone.utc)
        self.movements.append(Movement(sku, delta, reason, now))

    def total_value(self) -> float:
        return sum(item.value() for item in self.items.values())

    def reorder_report(self) -> list[dict]:
        report = []
        for item in sorted(self.items.values(), key=lambda i: i.sku):
            if item.needs_reorder():
                report.append(
                    {
                        "sku": item.sku,
                        "name": item.name,
                        "quantity": item.quantity,
                        "reorder_level": item.reorder_level,
                        "suggested": max(item.reorder_level * 2 - item.quantity, 0),
                    }
                )
        return report

    def history(self, sku: str) -> list[Movement]:
        return [m for m in self.movements if m.sku == sku]

    def find_by_tag(self, tag: str) -> list[Item]:
        return [item for item in self.items.values() if tag in item.tags]

    def save_json(self, path: Path) -> None:
        data = {
            "items": [vars(item) for item in self.items.values()],
            "movements": [
                {
                    "sku": m.sku,
                    "delta": m.delta,
                    "reason": m.reason,
                    "at": m.at.isoformat(),
                }
                for m in self.movements
            ],
        }
        path.write_text(json.dumps(data, indent=2))

    @classmethod
    def load_json(cls, path: Path) -> "Inventory":
        data = json.loads(path.read_text())
        inventory = cls()
        for raw in data["items"]:
            inventory.add_item(Item(**raw))
        for raw in data["movements"]:
            at = datetime.fromisoformat(raw["at"])
            inventory.movements.append(
                Movement(raw["sku"], raw["delta"], raw["reason"], at)
            )
        return inventory

    def export_csv(self, path: Path) -> int:
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["sku", "name", "unit_price", "quantity", "value"])
            for item in sorted(self.items.values(), key=lambda i: i.sku):
                writer.writerow(
                    [item.sku, item.name, item.unit_price, item.quantity, item.value()]
                )
        return len(self.items)
