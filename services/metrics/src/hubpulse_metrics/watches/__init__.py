"""Watchlists and trend alerts: a user's (or an organisation's) watches on models, authors, tasks, libraries or
saved searches, evaluated on every `hub.scores.v2` score and delivered by webhook, e-mail, the live socket and
`watch.alerts.v1`."""
