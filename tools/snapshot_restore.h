/* snapshot_restore.h - `bollard-store snapshot restore` (issue 8, import). */
#ifndef BOLLARD_TOOLS_SNAPSHOT_RESTORE_H
#define BOLLARD_TOOLS_SNAPSHOT_RESTORE_H

/* argv[0] is "snapshot". Returns the process exit status. */
int snapshot_main(int argc, char **argv);

#endif
