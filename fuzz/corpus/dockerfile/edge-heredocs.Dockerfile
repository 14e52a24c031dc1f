FROM busybox
RUN <<EOF
echo hello
echo world
EOF
RUN <<-'EOT' sh
	echo "$HOME stays literal"
		tabs stripped
	EOT
RUN cat <<A >/a && cat 3<<"B" >/b
first $X
A
second $X
B
RUN python3 <<PY
#!/usr/bin/env python3
print("hi")
PY
COPY <<conf.ini <<-"literal.txt" /etc/app/
[main]
key = $VALUE
conf.ini
	no $EXPANSION here
	literal.txt
RUN ["echo", "<<NOTAHEREDOC"]
RUN echo a<<b
RUN <<EOF
#!/bin/sh
echo shebang
EOF
