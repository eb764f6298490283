"""The desktop portal (org.freedesktop.portal.ScreenCast + RemoteDesktop) over D-Bus."""
