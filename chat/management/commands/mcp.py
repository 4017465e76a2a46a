from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve Fusion Room as MCP tools over stdio (needs FUSIONROOM_API_KEY)."

    def handle(self, *args, **options):
        from chat.api.mcp_server import server

        server.run("stdio")
