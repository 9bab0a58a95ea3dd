"""Typed keys for everything the app holds (web.AppKey, never string keys)."""

import aiosqlite
import redis.asyncio as redis
from aiohttp import web

from service.auth import Authenticator
from service.dispatch import Dispatcher
from service.keyring import KeyRing
from service.metrics import ServiceMetrics
from service.relay import OutboxRelay
from service.revisions import ProjectRevisions
from service.settings import Settings
from service.store.writer import Writer
from service.workflow_cache import WorkflowCache

SETTINGS = web.AppKey("settings", Settings)
KEYRING = web.AppKey("keyring", KeyRing)
READER = web.AppKey("reader", aiosqlite.Connection)
WRITER = web.AppKey("writer", Writer)
REDIS = web.AppKey("redis", redis.Redis)
RELAY = web.AppKey("relay", OutboxRelay)
AUTH = web.AppKey("auth", Authenticator)
ORIGIN = web.AppKey("origin", str)
DISPATCH = web.AppKey("dispatch", Dispatcher)
METRICS = web.AppKey("metrics", ServiceMetrics)
WORKFLOWS = web.AppKey("workflows", WorkflowCache)
REVISIONS = web.AppKey("revisions", ProjectRevisions)
