"""The Gradio chat UI of rag-news (``rag ui``)."""

from .app import build_app, launch

__all__ = ["build_app", "launch"]
