FROM busybox
VOLUME ["/a", ""]
