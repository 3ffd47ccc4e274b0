"""The Gradio web app (a thin layer over app.service)."""
