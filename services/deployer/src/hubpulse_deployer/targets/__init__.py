"""Deployment targets: each turns a deployment version into something that answers, and takes it down again."""
