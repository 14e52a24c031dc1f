FROM busybox
WORKDIR --parents /a
