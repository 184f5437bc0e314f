import CVireoSystem
import VMM
import VMMRun

Timeline.markProcessStart()
// Statically linked glibc: user and group names (--uid, --gid, the jail's `vireo` user) come from
// /etc/passwd and /etc/group only, never from a dlopened NSS module.
_ = csys_user_database_files_only()
VMMMain.run()
