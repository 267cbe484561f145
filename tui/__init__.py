"""A terminal viewer that steps through a run's sessions turn by turn (`python cli.py tui RUN_DIR`)."""
