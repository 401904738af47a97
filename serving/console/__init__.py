"""The CSM console: server-rendered pages of the book, each account's story, renewals, moves and models.

Served by the tierwise service under `/console` (`serving.console.app.ConsoleRouting`), signed in
with the named users of `serving.console.db`. docs/console.md says what each page shows.
"""
