FROM busybox
COPY a <<EOF
x
EOF
