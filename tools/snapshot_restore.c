/* snapshot_restore.c - `bollard-store snapshot restore FILE [flags]`: an etcd 3.4
 * snapshot (`etcdctl snapshot save`, a bbolt file plus a SHA-256 trailer) becomes
 * the data dir of a new one-member-or-more Bollard cluster (issue 8, import).
 *
 * Flags as etcdctl snapshot restore's: --name (default "default"), --data-dir
 * (default "<name>.etcd"), --initial-cluster (default "<name>=<advertise url>"),
 * --initial-cluster-token (default "etcd-cluster"), --initial-advertise-peer-urls
 * (default "http://localhost:2380"), --skip-hash-check.
 *
 * Order: the whole file is verified first (trailer hash, then every page with
 * bbolt_check) so that a corrupt or truncated file is refused before anything
 * is created; then the store is written into a temporary dir beside the target
 * (<parent>/.<base>.restore-XXXXXX) and renamed into place at the end. On any
 * error the temporary dir is removed: no data dir is left behind.
 *
 * The result is the layout bollard-store uses: <data-dir>/member/db (LMDB,
 * applied raft index 0) and an empty <data-dir>/member/raft, so the member
 * bootstraps a new raft cluster from its --initial-cluster flags when it starts
 * on the dir. The cluster flags are checked here (this member's name is in
 * --initial-cluster with its advertised peer URLs) so that a typo is caught
 * before the first start. */
#include "snapshot_restore.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lmdb.h>

#include "core/bbolt.h"
#include "core/errors.h"
#include "core/etcdimport.h"
#include "core/mvcc.h"

#define EXTRA_DBS 8 /* as node/backend.c's NODE_EXTRA_DBS */

struct ropts {
	const char *file, *name, *data_dir, *initial_cluster, *token, *peer_urls;
	bool skip_hash_check;
};

static void restore_usage(FILE *f)
{
	fprintf(f,
	        "usage: bollard-store snapshot restore FILE [--name NAME] [--data-dir DIR]\n"
	        "         [--initial-cluster NAME=URL,...] [--initial-cluster-token TOKEN]\n"
	        "         [--initial-advertise-peer-urls URL,...] [--skip-hash-check]\n"
	        "Creates a Bollard data dir from an etcd 3.4 snapshot (etcdctl snapshot save).\n"
	        "Defaults as etcdctl's: name \"default\", data dir \"<name>.etcd\", peer URL\n"
	        "\"http://localhost:2380\", token \"etcd-cluster\".\n");
}

static int parse(struct ropts *o, int argc, char **argv)
{
	static const char *const names[] = {"name", "data-dir", "initial-cluster",
	                                    "initial-cluster-token",
	                                    "initial-advertise-peer-urls"};
	const char **slots[] = {&o->name, &o->data_dir, &o->initial_cluster, &o->token,
	                        &o->peer_urls};

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (a[0] != '-' || a[1] == '\0') {
			if (o->file != NULL) {
				fprintf(stderr, "bollard-store snapshot restore: one snapshot file only\n");
				return 2;
			}
			o->file = a;
			continue;
		}
		const char *name = a + 1 + (a[1] == '-'), *eq = strchr(name, '=');
		size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
		if (nlen == 15 && !strncmp(name, "skip-hash-check", 15)) {
			o->skip_hash_check = !eq || !strcmp(eq + 1, "true");
			continue;
		}
		if (nlen == 4 && !strncmp(name, "help", 4)) {
			restore_usage(stdout);
			return 1;
		}
		size_t k;
		for (k = 0; k < sizeof(names) / sizeof(names[0]); k++)
			if (strlen(names[k]) == nlen && !strncmp(names[k], name, nlen))
				break;
		if (k == sizeof(names) / sizeof(names[0])) {
			fprintf(stderr, "bollard-store snapshot restore: unknown flag %s\n", a);
			restore_usage(stderr);
			return 2;
		}
		if (eq)
			*slots[k] = eq + 1;
		else if (i + 1 < argc)
			*slots[k] = argv[++i];
		else {
			fprintf(stderr, "bollard-store snapshot restore: flag needs an argument: %s\n", a);
			return 2;
		}
	}
	if (o->file == NULL) {
		fprintf(stderr, "bollard-store snapshot restore: snapshot file required\n");
		restore_usage(stderr);
		return 2;
	}
	return 0;
}

/* This member's entries of --initial-cluster must be exactly its advertised peer URLs. */
static int check_cluster(const struct ropts *o)
{
	char *ic = strdup(o->initial_cluster), *save = NULL;
	size_t found = 0, nurls = 0, matched = 0;
	int rc = 0;

	if (ic == NULL)
		return -ENOMEM;
	for (char *e = strtok_r(ic, ",", &save); e; e = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(e, '=');
		if (eq == NULL || eq == e || eq[1] == '\0') {
			fprintf(stderr, "bollard-store snapshot restore: bad --initial-cluster entry "
			                "\"%s\" (want name=url)\n", e);
			rc = -EINVAL;
			break;
		}
		*eq = '\0';
		if (strcmp(e, o->name) != 0)
			continue;
		found++;
		/* is this URL one of the advertised ones? */
		const char *u = o->peer_urls;
		size_t ul = strlen(eq + 1);
		while (*u) {
			const char *c = strchr(u, ',');
			size_t l = c ? (size_t)(c - u) : strlen(u);
			if (l == ul && !strncmp(u, eq + 1, l)) {
				matched++;
				break;
			}
			u += l + (c != NULL);
		}
	}
	for (const char *u = o->peer_urls; *u; u++)
		nurls += *u == ',';
	nurls++;
	if (rc == 0 && found == 0) {
		fprintf(stderr, "bollard-store snapshot restore: member \"%s\" is not in "
		                "--initial-cluster \"%s\"\n", o->name, o->initial_cluster);
		rc = -EINVAL;
	} else if (rc == 0 && (matched != found || found != nurls)) {
		fprintf(stderr, "bollard-store snapshot restore: --initial-cluster has %s=... but "
		                "--initial-advertise-peer-urls is \"%s\"; they must match\n",
		        o->name, o->peer_urls);
		rc = -EINVAL;
	}
	free(ic);
	return rc;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void rm_tree(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* Writes the store into dir/member/db. */
static int write_store(const char *dir, struct bbolt_db *db, size_t file_len,
                       struct etcdimport_stats *st, char *err, size_t errlen)
{
	char member[PATH_MAX + 16], dbdir[PATH_MAX + 32], raft[PATH_MAX + 32];
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	struct mvcc m;
	int rc;

	snprintf(member, sizeof(member), "%.4000s/member", dir);
	snprintf(dbdir, sizeof(dbdir), "%.4050s/db", member);
	snprintf(raft, sizeof(raft), "%.4050s/raft", member);
	if (mkdir(member, 0700) < 0 || mkdir(dbdir, 0700) < 0 || mkdir(raft, 0700) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot create %.300s: %s", dbdir, strerror(errno));
		return rc;
	}
	/* LMDB's map: the values and history take about what bbolt's pages did. */
	size_t map = file_len * 3 + (256u << 20);
	if ((rc = mdb_env_create(&env)) != 0 ||
	    (rc = mdb_env_set_maxdbs(env, MVCC_MAX_DBS + EXTRA_DBS)) != 0 ||
	    (rc = mdb_env_set_mapsize(env, map)) != 0 ||
	    (rc = mdb_env_open(env, dbdir, MDB_NOTLS, 0600)) != 0) {
		snprintf(err, errlen, "cannot open a database in %.300s: %s", dbdir, mdb_strerror(rc));
		if (env)
			mdb_env_close(env);
		return -EIO;
	}
	if ((rc = mvcc_open(&m, env)) != 0 ||
	    (rc = bollard_err_from_lmdb(mdb_txn_begin(env, NULL, 0, &txn))) != 0) {
		snprintf(err, errlen, "cannot open the store in %.300s: %s", dbdir, bollard_strerror(rc));
		mdb_env_close(env);
		return rc;
	}
	if ((rc = etcdimport_run(db, &m, txn, st, err, errlen)) != 0) {
		mdb_txn_abort(txn);
		mdb_env_close(env);
		return rc;
	}
	if ((rc = mdb_txn_commit(txn)) != 0 || (rc = mdb_env_sync(env, 1)) != 0) {
		snprintf(err, errlen, "cannot write %.300s: %s", dbdir, mdb_strerror(rc));
		mdb_env_close(env);
		return -EIO;
	}
	mdb_env_close(env);
	fsync_dir(dbdir);
	fsync_dir(member);
	return fsync_dir(dir);
}

static int restore(const struct ropts *o)
{
	struct bbolt_db db;
	struct bbolt_stats bs;
	struct etcdimport_stats st;
	struct stat sb;
	char err[512], tmp[PATH_MAX], dcopy[PATH_MAX], bcopy[PATH_MAX];
	int rc;

	if (check_cluster(o) != 0)
		return 1;
	if (stat(o->data_dir, &sb) == 0) {
		fprintf(stderr, "bollard-store snapshot restore: data-dir \"%s\" exists\n",
		        o->data_dir);
		return 1;
	}
	/* 1. verify everything before creating anything */
	rc = bbolt_open_file(&db, o->file,
	                     o->skip_hash_check ? BBOLT_TRAILER_AUTO : BBOLT_TRAILER_REQUIRE);
	if (rc != 0) {
		if (rc == BBOLT_ECORRUPT && stat(o->file, &sb) == 0 && sb.st_size % 512 != 32 &&
		    !o->skip_hash_check)
			fprintf(stderr, "bollard-store snapshot restore: %s: truncated or not an etcd "
			                "snapshot: %s\n", o->file, db.err);
		else
			fprintf(stderr, "bollard-store snapshot restore: %s: %s\n", o->file, db.err);
		return 1;
	}
	if ((rc = bbolt_check(&db, &bs)) != 0) {
		fprintf(stderr, "bollard-store snapshot restore: %s: bad page: %s\n", o->file,
		        db.err);
		bbolt_close(&db);
		return 1;
	}
	/* 2. write into a temporary dir beside the target, then rename it */
	snprintf(dcopy, sizeof(dcopy), "%s", o->data_dir);
	snprintf(bcopy, sizeof(bcopy), "%s", o->data_dir);
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s/.%s.restore-XXXXXX", dirname(dcopy),
	                     basename(bcopy)) >= sizeof(tmp) - 64) {
		fprintf(stderr, "bollard-store snapshot restore: --data-dir is too long\n");
		bbolt_close(&db);
		return 1;
	}
	if (mkdtemp(tmp) == NULL) {
		fprintf(stderr, "bollard-store snapshot restore: cannot create %s: %s\n", tmp,
		        strerror(errno));
		bbolt_close(&db);
		return 1;
	}
	rc = write_store(tmp, &db, db.len, &st, err, sizeof(err));
	bbolt_close(&db);
	if (rc == 0 && rename(tmp, o->data_dir) < 0) {
		rc = -errno;
		snprintf(err, sizeof(err), "cannot rename %.200s to %.200s: %s", tmp, o->data_dir,
		         strerror(errno));
	}
	if (rc != 0) {
		rm_tree(tmp);
		fprintf(stderr, "bollard-store snapshot restore: %s: %s\n", o->file, err);
		return 1;
	}
	snprintf(dcopy, sizeof(dcopy), "%s", o->data_dir);
	fsync_dir(dirname(dcopy));
	printf("restored snapshot %s to %s: revision %" PRId64 ", compacted %" PRId64 ", %" PRIu64
	       " revisions (%" PRIu64 " deletions), %" PRIu64 " leases, %" PRIu64 " users, %" PRIu64
	       " roles, auth %s\n",
	       o->file, o->data_dir, st.current_rev, st.compact_rev, st.revisions, st.tombstones,
	       st.leases, st.users, st.roles, st.auth_enabled ? "enabled" : "disabled");
	printf("start it with: bollard-store --name %s --data-dir %s --initial-cluster %s "
	       "--initial-cluster-token %s --initial-advertise-peer-urls %s ...\n",
	       o->name, o->data_dir, o->initial_cluster, o->token, o->peer_urls);
	return 0;
}

int snapshot_main(int argc, char **argv)
{
	struct ropts o = {0};
	char *dflt_dir = NULL, *dflt_ic = NULL;
	int rc;

	if (argc < 2 || strcmp(argv[1], "restore") != 0) {
		fprintf(stderr, "bollard-store snapshot: unknown command \"%s\" (only \"restore\"; "
		                "save with etcdctl snapshot save)\n", argc < 2 ? "" : argv[1]);
		restore_usage(stderr);
		return 2;
	}
	if ((rc = parse(&o, argc - 2, argv + 2)) != 0)
		return rc == 1 ? 0 : rc;
	if (o.name == NULL)
		o.name = "default";
	if (o.peer_urls == NULL)
		o.peer_urls = "http://localhost:2380";
	if (o.token == NULL)
		o.token = "etcd-cluster";
	if (o.data_dir == NULL || !*o.data_dir) {
		if (asprintf(&dflt_dir, "%s.etcd", o.name) < 0)
			return 1;
		o.data_dir = dflt_dir;
	}
	if (o.initial_cluster == NULL) {
		/* etcd's default: this member with each advertised URL */
		size_t cap = (strlen(o.name) + 2) * (strlen(o.peer_urls) + 1) + strlen(o.peer_urls) + 64;
		char *p = dflt_ic = calloc(1, cap), *q;
		const char *u = o.peer_urls;
		if (p == NULL)
			return 1;
		q = p;
		while (*u) {
			const char *c = strchr(u, ',');
			size_t l = c ? (size_t)(c - u) : strlen(u);
			q += sprintf(q, "%s%s=%.*s", q == p ? "" : ",", o.name, (int)l, u);
			u += l + (c != NULL);
		}
		o.initial_cluster = dflt_ic;
	}
	rc = restore(&o);
	free(dflt_dir);
	free(dflt_ic);
	return rc;
}
