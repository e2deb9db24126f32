"""Email: rendering a digest (render.py, templates/) and sending it (smtp.py)."""
