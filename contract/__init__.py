"""What the service and the worker agree on: event and snapshot schemas, stream names,
name rules, the sealed-value format and how configuration is read from the environment.

Both programs import this package; neither imports the other."""
