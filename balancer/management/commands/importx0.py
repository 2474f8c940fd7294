"""`manage.py importx0 NAME FILE`: create dynamic director NAME from an x0 director file."""
from django.core.management.base import BaseCommand, CommandError

from balancer import services
from balancer.x0 import X0Error, import_x0


class Command(BaseCommand):
    help = "Create a dynamic director from an x0 director INI file ([director], [cache], [bucket=NAME], [backend=NAME])."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("file")

    def handle(self, *args, name, file, **options):
        try:
            director = import_x0(name, file, actor="command:importx0")
        except X0Error as exc:
            raise CommandError(f"{file}: nothing imported:\n" + "\n".join(exc.errors)) from None
        except services.ServiceError as exc:
            raise CommandError(f"{file}: nothing imported: {exc}") from None
        self.stdout.write(f"imported director {director.name} with {_count(director.backends.count(), 'backend')}"
                          f" and {_count(director.buckets.count(), 'bucket')}")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'s' if number != 1 else ''}"
