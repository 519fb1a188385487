/* errors.c - error code to etcd message/status mapping (see errors.h). */
#include "core/errors.h"

#include <lmdb.h>
#include <string.h>

static const struct {
	int grpc_code;
	const char *msg;
} bollard_errtab[] = {
#define BOLLARD_ERR_ROW_(name, code, msg) {code, msg},
	BOLLARD_ERRORS(BOLLARD_ERR_ROW_)
#undef BOLLARD_ERR_ROW_
};

static int bollard_err_index(int err)
{
	if (err > BOLLARD_ERR_BASE_ && err < BOLLARD_ERR_END_)
		return err - BOLLARD_ERR_BASE_ - 1;
	return -1;
}

const char *bollard_strerror(int err)
{
	int i = bollard_err_index(err);
	if (i >= 0)
		return bollard_errtab[i].msg;
	if (err == 0)
		return "success";
	if (err <= MDB_KEYEXIST && err >= MDB_LAST_ERRCODE)
		return mdb_strerror(err);
	return strerror(err < 0 ? -err : err);
}

int bollard_err_grpc_code(int err)
{
	int i = bollard_err_index(err);
	if (err == 0)
		return 0;
	if (i >= 0)
		return bollard_errtab[i].grpc_code;
	return 2;
}
