"""flowkernel plugin: an epoll-based process poller for Linux."""
