"""`manage.py exportx0 NAME FILE`: write director NAME as an x0 director file."""
from django.core.management.base import BaseCommand, CommandError

from balancer.models import Director
from balancer.x0 import write_x0


class Command(BaseCommand):
    help = "Write a director (static or dynamic) as an x0 director INI file, atomically."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("file")

    def handle(self, *args, name, file, **options):
        director = Director.objects.filter(name=name).first()
        if director is None:
            raise CommandError(f"no director named {name!r}")
        try:
            write_x0(director, file)
        except OSError as exc:
            raise CommandError(f"cannot write {file}: {exc.strerror or exc}") from None
        self.stdout.write(f"wrote director {name} to {file}")
