"""API errors: every error answer is `{"error": {"code": "...", "message": "..."}}` with its HTTP status."""

from __future__ import annotations


class ApiError(Exception):
    """Raise anywhere in a request: the app's handler answers `status` with the JSON error body."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}
