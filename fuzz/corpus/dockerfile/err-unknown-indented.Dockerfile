FROM busybox
	 RUNN echo typo
