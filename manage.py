#!/usr/bin/env python3
"""Django's command-line utility for Director."""
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "director_site.settings")
    from django.core.management import execute_from_command_line

    from director_site.environment import EnvironmentProblem

    try:
        execute_from_command_line(sys.argv)
    except EnvironmentProblem as exc:  # a wrong DATABASE_URL is one line, not a traceback
        command = sys.argv[1] if len(sys.argv) > 1 else os.path.basename(sys.argv[0])
        sys.stderr.write(f"{command}: {exc}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
