"""Users and groups: passwd/group files and LDAP. The only network I/O of the publisher."""
