FROM busybox
RUN --mount=type=cache,target=/root/.cache,id=pip,sharing=locked,mode=0755,uid=1000,gid=1000 pip install x
RUN --mount=type=bind,source=src,target=/src,from=build,rw make
RUN --mount=target=/b ls /b
RUN --mount=type=tmpfs,target=/tmp,size=64m --network=none ls
RUN --mount=type=secret,id=npmrc,target=/root/.npmrc,required --mount=type=secret,id=tok,env=TOKEN,mode=0400 npm ci
RUN --mount=type=ssh,id=default,required=true git clone git@example.com:a/b
RUN --mount="type=bind,source=a b,target=/x" --network=HOST --security=insecure true
RUN --network=default -- echo "-- ends the flags"
RUN ["/bin/sh", "-c", "echo exec"]
RUN [ "echo", 'not json' ]
RUN [ -f /etc/passwd ] && echo yes
