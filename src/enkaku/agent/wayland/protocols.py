"""The wlroots-family protocols the agent speaks, described for pywayland.

pywayland ships the core and wayland-protocols interfaces; the four below live in
wlroots' own protocol set. Only their wire shape is described here (names, opcodes,
argument types, in protocol order), written for this project from the published
protocol definitions, which are MIT-licensed:

- ``zwlr_screencopy_manager_v1`` / ``zwlr_screencopy_frame_v1`` (version 3),
- ``zwp_virtual_keyboard_manager_v1`` / ``zwp_virtual_keyboard_v1`` (version 1),
- ``zwlr_virtual_pointer_manager_v1`` / ``zwlr_virtual_pointer_v1`` (version 2),
- ``zwlr_data_control_manager_v1`` and its device, source and offer (version 1: the
  clipboard only, not the primary selection), and the same as the standard
  ``ext_data_control_manager_v1`` (version 1; its device also announces the primary
  selection, which the agent lets go).

Requests are methods of the ``*Proxy`` classes; events are declared on the
``*Resource`` classes (pywayland's convention) and handled through
``proxy.dispatcher["name"]``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from pywayland.protocol.wayland import WlBuffer, WlOutput, WlSeat
from pywayland.protocol_core import Argument, ArgumentType, Global, Interface, Proxy, Resource

__all__ = [
    "EXT_DATA_CONTROL",
    "FRAME_FLAG_Y_INVERT",
    "WLR_DATA_CONTROL",
    "DataControl",
    "ZwlrDataControlManagerV1",
    "ZwlrScreencopyFrameV1",
    "ZwlrScreencopyManagerV1",
    "ZwlrVirtualPointerManagerV1",
    "ZwlrVirtualPointerV1",
    "ZwpVirtualKeyboardManagerV1",
    "ZwpVirtualKeyboardV1",
]

FRAME_FLAG_Y_INVERT = 1
KEYMAP_FORMAT_XKB_V1 = 1  # wl_keyboard.keymap_format.xkb_v1
KEY_RELEASED, KEY_PRESSED = 0, 1
BUTTON_RELEASED, BUTTON_PRESSED = 0, 1
AXIS_VERTICAL, AXIS_HORIZONTAL = 0, 1
AXIS_SOURCE_WHEEL = 0


# -- screencopy ---------------------------------------------------------------------


class ZwlrScreencopyFrameV1(Interface):
    """One frame of an output, copied into a client buffer."""

    name = "zwlr_screencopy_frame_v1"
    version = 3


class ZwlrScreencopyManagerV1(Interface):
    """Creates screencopy frames for outputs."""

    name = "zwlr_screencopy_manager_v1"
    version = 3


class ZwlrScreencopyFrameV1Proxy(Proxy[ZwlrScreencopyFrameV1]):
    interface = ZwlrScreencopyFrameV1

    @ZwlrScreencopyFrameV1.request(Argument(ArgumentType.Object, interface=WlBuffer))
    def copy(self, buffer: object) -> None:
        self._marshal(0, buffer)

    @ZwlrScreencopyFrameV1.request()
    def destroy(self) -> None:
        self._marshal(1)
        self._destroy()

    @ZwlrScreencopyFrameV1.request(Argument(ArgumentType.Object, interface=WlBuffer), version=2)
    def copy_with_damage(self, buffer: object) -> None:
        self._marshal(2, buffer)


class ZwlrScreencopyFrameV1Resource(Resource[ZwlrScreencopyFrameV1]):
    interface = ZwlrScreencopyFrameV1

    @ZwlrScreencopyFrameV1.event(
        Argument(ArgumentType.Uint),
        Argument(ArgumentType.Uint),
        Argument(ArgumentType.Uint),
        Argument(ArgumentType.Uint),
    )
    def buffer(self, format: int, width: int, height: int, stride: int) -> None:
        self._post_event(0, format, width, height, stride)

    @ZwlrScreencopyFrameV1.event(Argument(ArgumentType.Uint))
    def flags(self, flags: int) -> None:
        self._post_event(1, flags)

    @ZwlrScreencopyFrameV1.event(
        Argument(ArgumentType.Uint), Argument(ArgumentType.Uint), Argument(ArgumentType.Uint)
    )
    def ready(self, tv_sec_hi: int, tv_sec_lo: int, tv_nsec: int) -> None:
        self._post_event(2, tv_sec_hi, tv_sec_lo, tv_nsec)

    @ZwlrScreencopyFrameV1.event()
    def failed(self) -> None:
        self._post_event(3)

    @ZwlrScreencopyFrameV1.event(
        Argument(ArgumentType.Uint),
        Argument(ArgumentType.Uint),
        Argument(ArgumentType.Uint),
        Argument(ArgumentType.Uint),
        version=2,
    )
    def damage(self, x: int, y: int, width: int, height: int) -> None:
        self._post_event(4, x, y, width, height)

    @ZwlrScreencopyFrameV1.event(
        Argument(ArgumentType.Uint),
        Argument(ArgumentType.Uint),
        Argument(ArgumentType.Uint),
        version=3,
    )
    def linux_dmabuf(self, format: int, width: int, height: int) -> None:
        self._post_event(5, format, width, height)

    @ZwlrScreencopyFrameV1.event(version=3)
    def buffer_done(self) -> None:
        self._post_event(6)


class ZwlrScreencopyManagerV1Proxy(Proxy[ZwlrScreencopyManagerV1]):
    interface = ZwlrScreencopyManagerV1

    @ZwlrScreencopyManagerV1.request(
        Argument(ArgumentType.NewId, interface=ZwlrScreencopyFrameV1),
        Argument(ArgumentType.Int),
        Argument(ArgumentType.Object, interface=WlOutput),
    )
    def capture_output(self, overlay_cursor: int, output: object) -> ZwlrScreencopyFrameV1Proxy:
        frame: ZwlrScreencopyFrameV1Proxy = self._marshal_constructor(
            0, ZwlrScreencopyFrameV1, overlay_cursor, output
        )
        return frame

    @ZwlrScreencopyManagerV1.request(
        Argument(ArgumentType.NewId, interface=ZwlrScreencopyFrameV1),
        Argument(ArgumentType.Int),
        Argument(ArgumentType.Object, interface=WlOutput),
        Argument(ArgumentType.Int),
        Argument(ArgumentType.Int),
        Argument(ArgumentType.Int),
        Argument(ArgumentType.Int),
    )
    def capture_output_region(
        self, overlay_cursor: int, output: object, x: int, y: int, width: int, height: int
    ) -> ZwlrScreencopyFrameV1Proxy:
        frame: ZwlrScreencopyFrameV1Proxy = self._marshal_constructor(
            1, ZwlrScreencopyFrameV1, overlay_cursor, output, x, y, width, height
        )
        return frame

    @ZwlrScreencopyManagerV1.request()
    def destroy(self) -> None:
        self._marshal(2)
        self._destroy()


class ZwlrScreencopyManagerV1Resource(Resource[ZwlrScreencopyManagerV1]):
    interface = ZwlrScreencopyManagerV1


# -- virtual keyboard -----------------------------------------------------------------


class ZwpVirtualKeyboardV1(Interface):
    """A keyboard whose keymap and keys the client supplies."""

    name = "zwp_virtual_keyboard_v1"
    version = 1


class ZwpVirtualKeyboardManagerV1(Interface):
    """Creates virtual keyboards on a seat."""

    name = "zwp_virtual_keyboard_manager_v1"
    version = 1


class ZwpVirtualKeyboardV1Proxy(Proxy[ZwpVirtualKeyboardV1]):
    interface = ZwpVirtualKeyboardV1

    @ZwpVirtualKeyboardV1.request(
        Argument(ArgumentType.Uint),
        Argument(ArgumentType.FileDescriptor),
        Argument(ArgumentType.Uint),
    )
    def keymap(self, format: int, fd: int, size: int) -> None:
        self._marshal(0, format, fd, size)

    @ZwpVirtualKeyboardV1.request(
        Argument(ArgumentType.Uint), Argument(ArgumentType.Uint), Argument(ArgumentType.Uint)
    )
    def key(self, time: int, key: int, state: int) -> None:
        self._marshal(1, time, key, state)

    @ZwpVirtualKeyboardV1.request(
        Argument(ArgumentType.Uint),
        Argument(ArgumentType.Uint),
        Argument(ArgumentType.Uint),
        Argument(ArgumentType.Uint),
    )
    def modifiers(self, depressed: int, latched: int, locked: int, group: int) -> None:
        self._marshal(2, depressed, latched, locked, group)

    @ZwpVirtualKeyboardV1.request()
    def destroy(self) -> None:
        self._marshal(3)
        self._destroy()


class ZwpVirtualKeyboardV1Resource(Resource[ZwpVirtualKeyboardV1]):
    interface = ZwpVirtualKeyboardV1


class ZwpVirtualKeyboardManagerV1Proxy(Proxy[ZwpVirtualKeyboardManagerV1]):
    interface = ZwpVirtualKeyboardManagerV1

    @ZwpVirtualKeyboardManagerV1.request(
        Argument(ArgumentType.Object, interface=WlSeat),
        Argument(ArgumentType.NewId, interface=ZwpVirtualKeyboardV1),
    )
    def create_virtual_keyboard(self, seat: object) -> ZwpVirtualKeyboardV1Proxy:
        kb: ZwpVirtualKeyboardV1Proxy = self._marshal_constructor(0, ZwpVirtualKeyboardV1, seat)
        return kb


class ZwpVirtualKeyboardManagerV1Resource(Resource[ZwpVirtualKeyboardManagerV1]):
    interface = ZwpVirtualKeyboardManagerV1


# -- virtual pointer ------------------------------------------------------------------


class ZwlrVirtualPointerV1(Interface):
    """A pointer whose motion, buttons and axes the client supplies."""

    name = "zwlr_virtual_pointer_v1"
    version = 2


class ZwlrVirtualPointerManagerV1(Interface):
    """Creates virtual pointers."""

    name = "zwlr_virtual_pointer_manager_v1"
    version = 2


class ZwlrVirtualPointerV1Proxy(Proxy[ZwlrVirtualPointerV1]):
    interface = ZwlrVirtualPointerV1

    @ZwlrVirtualPointerV1.request(
        Argument(ArgumentType.Uint), Argument(ArgumentType.Fixed), Argument(ArgumentType.Fixed)
    )
    def motion(self, time: int, dx: float, dy: float) -> None:
        self._marshal(0, time, dx, dy)

    @ZwlrVirtualPointerV1.request(
        Argument(ArgumentType.Uint),
        Argument(ArgumentType.Uint),
        Argument(ArgumentType.Uint),
        Argument(ArgumentType.Uint),
        Argument(ArgumentType.Uint),
    )
    def motion_absolute(self, time: int, x: int, y: int, x_extent: int, y_extent: int) -> None:
        self._marshal(1, time, x, y, x_extent, y_extent)

    @ZwlrVirtualPointerV1.request(
        Argument(ArgumentType.Uint), Argument(ArgumentType.Uint), Argument(ArgumentType.Uint)
    )
    def button(self, time: int, button: int, state: int) -> None:
        self._marshal(2, time, button, state)

    @ZwlrVirtualPointerV1.request(
        Argument(ArgumentType.Uint), Argument(ArgumentType.Uint), Argument(ArgumentType.Fixed)
    )
    def axis(self, time: int, axis: int, value: float) -> None:
        self._marshal(3, time, axis, value)

    @ZwlrVirtualPointerV1.request()
    def frame(self) -> None:
        self._marshal(4)

    @ZwlrVirtualPointerV1.request(Argument(ArgumentType.Uint))
    def axis_source(self, axis_source: int) -> None:
        self._marshal(5, axis_source)

    @ZwlrVirtualPointerV1.request(Argument(ArgumentType.Uint), Argument(ArgumentType.Uint))
    def axis_stop(self, time: int, axis: int) -> None:
        self._marshal(6, time, axis)

    @ZwlrVirtualPointerV1.request(
        Argument(ArgumentType.Uint),
        Argument(ArgumentType.Uint),
        Argument(ArgumentType.Fixed),
        Argument(ArgumentType.Int),
    )
    def axis_discrete(self, time: int, axis: int, value: float, discrete: int) -> None:
        self._marshal(7, time, axis, value, discrete)

    @ZwlrVirtualPointerV1.request()
    def destroy(self) -> None:
        self._marshal(8)
        self._destroy()


class ZwlrVirtualPointerV1Resource(Resource[ZwlrVirtualPointerV1]):
    interface = ZwlrVirtualPointerV1


class ZwlrVirtualPointerManagerV1Proxy(Proxy[ZwlrVirtualPointerManagerV1]):
    interface = ZwlrVirtualPointerManagerV1

    @ZwlrVirtualPointerManagerV1.request(
        Argument(ArgumentType.Object, interface=WlSeat, nullable=True),
        Argument(ArgumentType.NewId, interface=ZwlrVirtualPointerV1),
    )
    def create_virtual_pointer(self, seat: object | None) -> ZwlrVirtualPointerV1Proxy:
        ptr: ZwlrVirtualPointerV1Proxy = self._marshal_constructor(0, ZwlrVirtualPointerV1, seat)
        return ptr

    @ZwlrVirtualPointerManagerV1.request()
    def destroy(self) -> None:
        self._marshal(1)
        self._destroy()

    @ZwlrVirtualPointerManagerV1.request(
        Argument(ArgumentType.Object, interface=WlSeat, nullable=True),
        Argument(ArgumentType.Object, interface=WlOutput, nullable=True),
        Argument(ArgumentType.NewId, interface=ZwlrVirtualPointerV1),
        version=2,
    )
    def create_virtual_pointer_with_output(
        self, seat: object | None, output: object | None
    ) -> ZwlrVirtualPointerV1Proxy:
        ptr: ZwlrVirtualPointerV1Proxy = self._marshal_constructor(
            2, ZwlrVirtualPointerV1, seat, output
        )
        return ptr


class ZwlrVirtualPointerManagerV1Resource(Resource[ZwlrVirtualPointerManagerV1]):
    interface = ZwlrVirtualPointerManagerV1


def _finish(interface: type[Interface], proxy: type[Proxy], resource: type[Resource]) -> None:
    interface._gen_c()
    interface.proxy_class = proxy
    interface.resource_class = resource
    interface.global_class = type(
        f"{interface.__name__}Global", (Global,), {"interface": interface}
    )


for _iface, _proxy, _resource in (
    (ZwlrScreencopyFrameV1, ZwlrScreencopyFrameV1Proxy, ZwlrScreencopyFrameV1Resource),
    (ZwlrScreencopyManagerV1, ZwlrScreencopyManagerV1Proxy, ZwlrScreencopyManagerV1Resource),
    (ZwpVirtualKeyboardV1, ZwpVirtualKeyboardV1Proxy, ZwpVirtualKeyboardV1Resource),
    (
        ZwpVirtualKeyboardManagerV1,
        ZwpVirtualKeyboardManagerV1Proxy,
        ZwpVirtualKeyboardManagerV1Resource,
    ),
    (ZwlrVirtualPointerV1, ZwlrVirtualPointerV1Proxy, ZwlrVirtualPointerV1Resource),
    (
        ZwlrVirtualPointerManagerV1,
        ZwlrVirtualPointerManagerV1Proxy,
        ZwlrVirtualPointerManagerV1Resource,
    ),
):
    _finish(_iface, _proxy, _resource)

# -- data control (the clipboard) ---------------------------------------------------


class DataControl(NamedTuple):
    """One family of the data-control protocol: wlroots' ``zwlr_data_control_*_v1``
    and the standard ``ext_data_control_*_v1`` (KWin since Plasma 6.5, which dropped
    the wlroots one; newer wlroots), which have the same requests and events."""

    manager: type[Interface]
    device: type[Interface]
    source: type[Interface]
    offer: type[Interface]
    #: The device announces the primary selection too (ext's version 1 does; wlroots'
    #: only from its version 2, which the agent does not bind).
    primary: bool


def _data_control(prefix: str, primary: bool) -> DataControl:
    """The four interfaces of ``{prefix}_data_control_*_v1`` (see ``DataControl``)."""

    class Offer(Interface):
        """Another client's clipboard content: its MIME types, a way to receive it."""

        name = f"{prefix}_data_control_offer_v1"
        version = 1

    class Source(Interface):
        """Content this client puts on the clipboard, sent when someone pastes."""

        name = f"{prefix}_data_control_source_v1"
        version = 1

    class Device(Interface):
        """A seat's clipboard as a data-control client sees and sets it."""

        name = f"{prefix}_data_control_device_v1"
        version = 1

    class Manager(Interface):
        """Creates data-control devices and sources."""

        name = f"{prefix}_data_control_manager_v1"
        version = 1

    class OfferProxy(Proxy[Offer]):
        interface = Offer

        @Offer.request(Argument(ArgumentType.String), Argument(ArgumentType.FileDescriptor))
        def receive(self, mime_type: str, fd: int) -> None:
            self._marshal(0, mime_type, fd)

        @Offer.request()
        def destroy(self) -> None:
            self._marshal(1)
            self._destroy()

    class OfferResource(Resource[Offer]):
        interface = Offer

        @Offer.event(Argument(ArgumentType.String))
        def offer(self, mime_type: str) -> None:
            self._post_event(0, mime_type)

    class SourceProxy(Proxy[Source]):
        interface = Source

        @Source.request(Argument(ArgumentType.String))
        def offer(self, mime_type: str) -> None:
            self._marshal(0, mime_type)

        @Source.request()
        def destroy(self) -> None:
            self._marshal(1)
            self._destroy()

    class SourceResource(Resource[Source]):
        interface = Source

        @Source.event(Argument(ArgumentType.String), Argument(ArgumentType.FileDescriptor))
        def send(self, mime_type: str, fd: int) -> None:
            self._post_event(0, mime_type, fd)

        @Source.event()
        def cancelled(self) -> None:
            self._post_event(1)

    class DeviceProxy(Proxy[Device]):
        interface = Device

        @Device.request(Argument(ArgumentType.Object, interface=Source, nullable=True))
        def set_selection(self, source: object | None) -> None:
            self._marshal(0, source)

        @Device.request()
        def destroy(self) -> None:
            self._marshal(1)
            self._destroy()

        if primary:

            @Device.request(Argument(ArgumentType.Object, interface=Source, nullable=True))
            def set_primary_selection(self, source: object | None) -> None:
                self._marshal(2, source)

    class DeviceResource(Resource[Device]):
        interface = Device

        @Device.event(Argument(ArgumentType.NewId, interface=Offer))
        def data_offer(self, offer: object) -> None:
            self._post_event(0, offer)

        @Device.event(Argument(ArgumentType.Object, interface=Offer, nullable=True))
        def selection(self, offer: object | None) -> None:
            self._post_event(1, offer)

        @Device.event()
        def finished(self) -> None:
            self._post_event(2)

        if primary:

            @Device.event(Argument(ArgumentType.Object, interface=Offer, nullable=True))
            def primary_selection(self, offer: object | None) -> None:
                self._post_event(3, offer)

    class ManagerProxy(Proxy[Manager]):
        interface = Manager

        @Manager.request(Argument(ArgumentType.NewId, interface=Source))
        def create_data_source(self) -> Any:
            return self._marshal_constructor(0, Source)

        @Manager.request(
            Argument(ArgumentType.NewId, interface=Device),
            Argument(ArgumentType.Object, interface=WlSeat),
        )
        def get_data_device(self, seat: object) -> Any:
            return self._marshal_constructor(1, Device, seat)

        @Manager.request()
        def destroy(self) -> None:
            self._marshal(2)
            self._destroy()

    class ManagerResource(Resource[Manager]):
        interface = Manager

    for iface, proxy, resource in (
        (Offer, OfferProxy, OfferResource),
        (Source, SourceProxy, SourceResource),
        (Device, DeviceProxy, DeviceResource),
        (Manager, ManagerProxy, ManagerResource),
    ):
        _finish(iface, proxy, resource)
    return DataControl(Manager, Device, Source, Offer, primary)


#: wlroots' data control (version 1: the clipboard only) and the standard one.
WLR_DATA_CONTROL = _data_control("zwlr", primary=False)
EXT_DATA_CONTROL = _data_control("ext", primary=True)
ZwlrDataControlManagerV1 = WLR_DATA_CONTROL.manager
