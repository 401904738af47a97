"""tierwise: thin glue (CLI and settings) over features, training and serving.

Importing this package (or `tierwise.settings`) has no side effects and does not load the CLI;
process-wide set-up belongs to the program's entry point (`tierwise.cli.main`).
"""
