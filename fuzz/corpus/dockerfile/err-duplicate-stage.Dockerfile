FROM busybox AS base
FROM busybox AS BASE
