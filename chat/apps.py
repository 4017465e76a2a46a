from django.apps import AppConfig


def _render_markdown(text: str) -> str:
    from . import markdown

    # Looked up at each call, so a test that wraps markdown.render counts every one.
    return markdown.render(text)


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"

    def ready(self):
        from .models import set_answer_renderer

        # Answer.save renders the text it stores; the models own the hook, so the
        # engine, which imports them, never imports the rendering.
        set_answer_renderer(_render_markdown)
