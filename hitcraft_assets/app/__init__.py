"""The ASGI app (`hitcraft serve`): the REST API under /v1 and, next, the dashboard. It reads only the
serving snapshot (HITCRAFT_SERVING_PATH) and the app database (HITCRAFT_APP_DB), never the warehouse, and
never imports Dagster."""
