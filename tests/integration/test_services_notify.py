"""The on-commit announcement reaches the channel-layer group from any thread, or only logs."""
import asyncio
import logging

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from balancer import notify


async def _subscribe():
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(notify.GROUP, channel)
    return layer, channel


async def test_announce_from_the_loop_thread_is_scheduled():
    layer, channel = await _subscribe()
    notify.announce_config_changed(7)  # a running loop in this thread: must not block or raise
    message = await asyncio.wait_for(layer.receive(channel), 5)
    assert message == {"type": "config.changed", "version": 7}


async def test_announce_from_a_worker_thread():
    layer, channel = await _subscribe()
    await sync_to_async(notify.announce_config_changed, thread_sensitive=False)(8)
    message = await asyncio.wait_for(layer.receive(channel), 5)
    assert message == {"type": "config.changed", "version": 8}


class _BrokenLayer:
    async def group_send(self, group, message):
        raise ConnectionRefusedError("layer down")


def test_unreachable_layer_only_logs(monkeypatch, caplog):
    monkeypatch.setattr(notify, "get_channel_layer", lambda: _BrokenLayer())
    with caplog.at_level(logging.WARNING, logger="director.notify"):
        notify.announce_config_changed(9)
    assert "could not announce config version 9: layer down" in caplog.text


def test_missing_layer_is_ignored(monkeypatch, caplog):
    """No channel layer configured: nothing to announce to, nothing raised, nothing logged
    (the data plane's version poll picks the change up)."""
    monkeypatch.setattr(notify, "get_channel_layer", lambda: None)
    with caplog.at_level(logging.DEBUG, logger="director.notify"):
        assert notify.announce_config_changed(10) is None
    assert caplog.records == []
    assert not notify._pending  # no send was scheduled
