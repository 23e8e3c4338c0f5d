"""Plumbing shared by every back-office service: envelope, Kafka, outbox, inbox, HTTP, auth."""
