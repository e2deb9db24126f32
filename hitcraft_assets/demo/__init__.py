"""The demo product: a seeded HitCraft simulator writing Mixpanel raw-export files with a ground truth."""

from hitcraft_assets.demo.simulator import DEFAULT_USERS, DemoSummary, demo_exists, generate_demo

__all__ = ["DEFAULT_USERS", "DemoSummary", "demo_exists", "generate_demo"]
