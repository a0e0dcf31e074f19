"""``python -m mailer`` runs the CLI, as the console script does."""

from mailer.entry import main

main()
