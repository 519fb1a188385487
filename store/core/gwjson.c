/* gwjson.c - etcd's gateway JSON to and from protobuf (gwjson.h), on
 * jansson for the JSON text (base64: core/base64.c). Requests are turned
 * into wire bytes rather than into a message so that they decode exactly as
 * a gRPC request does (dispatch.c's srv_call_unpack, with its limits). */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/base64.h"
#include "core/gwjson.h"
#include "core/pbwire.h"

/* ------------------------------------------------------------ wire out */

/* Unlike pbwire.h's field writers, these write a field even at its
 * default: a oneof member set to zero must reach the decoder as set. */

static int buf_put(struct gwjson_buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		uint8_t *q;
		while (cap < b->len + n)
			cap *= 2;
		if ((q = realloc(b->p, cap)) == NULL)
			return -ENOMEM;
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

static int put_varint(struct gwjson_buf *b, uint64_t v)
{
	uint8_t t[10];
	return buf_put(b, t, pbwire_varint_put(t, v));
}

static int put_tag(struct gwjson_buf *b, unsigned id, unsigned wire_type)
{
	return put_varint(b, (uint64_t)id << 3 | wire_type);
}

static int put_fixed(struct gwjson_buf *b, uint64_t v, size_t n)
{
	uint8_t t[8];
	for (size_t i = 0; i < n; i++)
		t[i] = (uint8_t)(v >> (8 * i));
	return buf_put(b, t, n);
}

static int put_varint_field(struct gwjson_buf *b, unsigned id, uint64_t v)
{
	int rc = put_tag(b, id, PBWIRE_VARINT);
	return rc != 0 ? rc : put_varint(b, v);
}

/* A fixed32 (n 4, wire type 5) or fixed64 (n 8, wire type 1) field. */
static int put_fixed_field(struct gwjson_buf *b, unsigned id, uint64_t v, size_t n)
{
	int rc = put_tag(b, id, n == 4 ? 5 : 1);
	return rc != 0 ? rc : put_fixed(b, v, n);
}

static int put_delimited(struct gwjson_buf *b, unsigned id, const void *p, size_t n)
{
	int rc;
	if ((rc = put_tag(b, id, PBWIRE_LEN)) != 0 || (rc = put_varint(b, n)) != 0)
		return rc;
	return buf_put(b, p, n);
}

/* ------------------------------------------------------------- JSON in */

struct parse {
	char *err;
	size_t errlen;
};

static int bad(struct parse *ps, const ProtobufCFieldDescriptor *f, const char *what)
{
	snprintf(ps->err, ps->errlen, "bad value for field \"%s\": %s", f->name, what);
	return -EINVAL;
}

/* jsonpb's name for a field: the proto name without its underscores, each
 * letter after one in upper case ("keys_only" -> "keysOnly"). */
static bool json_name_is(const char *proto, const char *key)
{
	bool up = false;

	for (; *proto; proto++) {
		if (*proto == '_') {
			up = true;
			continue;
		}
		char c = up && *proto >= 'a' && *proto <= 'z' ? (char)(*proto - 'a' + 'A') : *proto;
		up = false;
		if (c != *key++)
			return false;
	}
	return *key == '\0';
}

static const ProtobufCFieldDescriptor *field_for(const ProtobufCMessageDescriptor *d,
                                                 const char *key)
{
	const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, key);

	for (unsigned i = 0; f == NULL && i < d->n_fields; i++)
		if (json_name_is(d->fields[i].name, key))
			f = &d->fields[i];
	return f;
}

/* An integer as jsonpb takes one: a JSON number, or a string of one. */
static bool json_int(const json_t *v, bool is_unsigned, uint64_t *out)
{
	const char *s;
	char *end;

	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);
		if (is_unsigned && i < 0)
			return false;
		*out = (uint64_t)i;
		return true;
	}
	if (!json_is_string(v) || *(s = json_string_value(v)) == '\0')
		return false;
	errno = 0;
	if (is_unsigned) {
		if (*s == '-')
			return false;
		*out = strtoull(s, &end, 10);
	} else {
		*out = (uint64_t)strtoll(s, &end, 10);
	}
	return errno == 0 && *end == '\0';
}

static int object_to_wire(struct parse *ps, const ProtobufCMessageDescriptor *d,
                          const json_t *obj, struct gwjson_buf *out);

/* One value of field f (an element, for a repeated one). */
static int value_to_wire(struct parse *ps, const ProtobufCFieldDescriptor *f, const json_t *v,
                         struct gwjson_buf *out)
{
	uint64_t u = 0;
	int rc;

	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		if (!json_int(v, false, &u) || (int64_t)u < INT32_MIN || (int64_t)u > INT32_MAX)
			return bad(ps, f, "not a 32-bit integer");
		if (f->type == PROTOBUF_C_TYPE_SFIXED32)
			return put_fixed_field(out, f->id, (uint32_t)(int32_t)u, 4);
		if (f->type == PROTOBUF_C_TYPE_SINT32)
			u = (uint32_t)(((int32_t)u << 1) ^ ((int32_t)u >> 31));
		return put_varint_field(out, f->id, u); /* int32: sign-extended */
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		if (!json_int(v, true, &u) || u > UINT32_MAX)
			return bad(ps, f, "not an unsigned 32-bit integer");
		if (f->type == PROTOBUF_C_TYPE_FIXED32)
			return put_fixed_field(out, f->id, u, 4);
		return put_varint_field(out, f->id, u);
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		if (!json_int(v, false, &u))
			return bad(ps, f, "not a 64-bit integer");
		if (f->type == PROTOBUF_C_TYPE_SFIXED64)
			return put_fixed_field(out, f->id, u, 8);
		if (f->type == PROTOBUF_C_TYPE_SINT64)
			u = ((uint64_t)(int64_t)u << 1) ^ (uint64_t)((int64_t)u >> 63);
		return put_varint_field(out, f->id, u);
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		if (!json_int(v, true, &u))
			return bad(ps, f, "not an unsigned 64-bit integer");
		if (f->type == PROTOBUF_C_TYPE_FIXED64)
			return put_fixed_field(out, f->id, u, 8);
		return put_varint_field(out, f->id, u);
	case PROTOBUF_C_TYPE_FLOAT: {
		float x;
		uint32_t bits;
		if (!json_is_number(v))
			return bad(ps, f, "not a number");
		x = (float)json_number_value(v);
		memcpy(&bits, &x, 4);
		return put_fixed_field(out, f->id, bits, 4);
	}
	case PROTOBUF_C_TYPE_DOUBLE: {
		double x;
		if (!json_is_number(v))
			return bad(ps, f, "not a number");
		x = json_number_value(v);
		memcpy(&u, &x, 8);
		return put_fixed_field(out, f->id, u, 8);
	}
	case PROTOBUF_C_TYPE_BOOL:
		if (!json_is_boolean(v))
			return bad(ps, f, "not true or false");
		return put_varint_field(out, f->id, json_is_true(v));
	case PROTOBUF_C_TYPE_ENUM: {
		const ProtobufCEnumDescriptor *ed = f->descriptor;
		if (json_is_string(v)) {
			const ProtobufCEnumValue *ev =
				protobuf_c_enum_descriptor_get_value_by_name(ed, json_string_value(v));
			if (ev == NULL)
				return bad(ps, f, "unknown enum value");
			u = (uint64_t)(int64_t)ev->value;
		} else if (!json_int(v, false, &u) || (int64_t)u < INT32_MIN ||
		           (int64_t)u > INT32_MAX) {
			return bad(ps, f, "not an enum value");
		}
		return put_varint_field(out, f->id, u);
	}
	case PROTOBUF_C_TYPE_STRING:
		if (!json_is_string(v))
			return bad(ps, f, "not a string");
		return put_delimited(out, f->id, json_string_value(v), json_string_length(v));
	case PROTOBUF_C_TYPE_BYTES: {
		uint8_t *data;
		size_t n;
		if (!json_is_string(v))
			return bad(ps, f, "not a base64 string");
		data = base64_decode(json_string_value(v), json_string_length(v), false, &n);
		if (data == NULL)
			return bad(ps, f, "illegal base64 data");
		rc = put_delimited(out, f->id, data, n);
		free(data);
		return rc;
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		struct gwjson_buf sub = {0};
		if (!json_is_object(v))
			return bad(ps, f, "not an object");
		if ((rc = object_to_wire(ps, f->descriptor, v, &sub)) == 0)
			rc = put_delimited(out, f->id, sub.p ? sub.p : (uint8_t *)"", sub.len);
		free(sub.p);
		return rc;
	}
	}
	return bad(ps, f, "unsupported type");
}

static int object_to_wire(struct parse *ps, const ProtobufCMessageDescriptor *d,
                          const json_t *obj, struct gwjson_buf *out)
{
	const char *key;
	json_t *v;
	int rc;

	json_object_foreach((json_t *)obj, key, v) {
		const ProtobufCFieldDescriptor *f = field_for(d, key);
		if (f == NULL || json_is_null(v))
			continue; /* as grpc-gateway's jsonpb: unknown fields are skipped */
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t i;
			json_t *e;
			if (!json_is_array(v))
				return bad(ps, f, "not an array");
			json_array_foreach(v, i, e) {
				if ((rc = value_to_wire(ps, f, e, out)) != 0)
					return rc;
			}
		} else if ((rc = value_to_wire(ps, f, v, out)) != 0) {
			return rc;
		}
	}
	return 0;
}

int gwjson_to_wire(const ProtobufCMessageDescriptor *d, const char *json, size_t len,
                   struct gwjson_buf *out, char *err, size_t errlen)
{
	struct parse ps = {err, errlen};
	json_error_t je;
	json_t *root;
	size_t i = 0;
	int rc;

	while (i < len && (json[i] == ' ' || json[i] == '\t' || json[i] == '\r' || json[i] == '\n'))
		i++;
	if (i == len)
		return 0; /* no body: the empty message, as grpc-gateway reads it */
	if ((root = json_loadb(json, len, JSON_DECODE_ANY, &je)) == NULL) {
		snprintf(err, errlen, "%s", je.text);
		return -EINVAL;
	}
	if (!json_is_object(root)) {
		snprintf(err, errlen, "the request body is not a JSON object");
		json_decref(root);
		return -EINVAL;
	}
	rc = object_to_wire(&ps, d, root, out);
	json_decref(root);
	return rc;
}

/* ------------------------------------------------------------ JSON out */

static json_t *message_to_json(const ProtobufCMessage *m);

static json_t *base64_json(const uint8_t *p, size_t n)
{
	char *t = base64_encode(p, n, false);
	json_t *v = t ? json_string(t) : NULL;

	free(t);
	return v;
}

/* The value at p, of field f's type (an element, for a repeated one). */
static json_t *value_json(const ProtobufCFieldDescriptor *f, const void *p)
{
	char num[24];

	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		return json_integer(*(const int32_t *)p);
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		return json_integer(*(const uint32_t *)p);
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		snprintf(num, sizeof(num), "%" PRId64, *(const int64_t *)p);
		return json_string(num);
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		snprintf(num, sizeof(num), "%" PRIu64, *(const uint64_t *)p);
		return json_string(num);
	case PROTOBUF_C_TYPE_FLOAT:
		return json_real(*(const float *)p);
	case PROTOBUF_C_TYPE_DOUBLE:
		return json_real(*(const double *)p);
	case PROTOBUF_C_TYPE_BOOL:
		return json_boolean(*(const protobuf_c_boolean *)p);
	case PROTOBUF_C_TYPE_ENUM: {
		int v = *(const int *)p;
		const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
		return ev ? json_string(ev->name) : json_integer(v);
	}
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)p;
		return json_stringn_nocheck(s ? s : "", s ? strlen(s) : 0);
	}
	case PROTOBUF_C_TYPE_BYTES: {
		const ProtobufCBinaryData *b = p;
		return base64_json(b->data, b->len);
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *sub = *(ProtobufCMessage *const *)p;
		return sub ? message_to_json(sub) : json_object();
	}
	}
	return json_null();
}

static size_t element_size(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return 8;
	case PROTOBUF_C_TYPE_DOUBLE:
		return sizeof(double);
	case PROTOBUF_C_TYPE_STRING:
		return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(ProtobufCMessage *);
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_ENUM:
		return sizeof(int);
	default:
		return 4;
	}
}

/* Whether a singular proto3 field holds its default (jsonpb leaves it out). */
static bool is_default(const ProtobufCFieldDescriptor *f, const void *p)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)p;
		return s == NULL || *s == '\0';
	}
	case PROTOBUF_C_TYPE_BYTES:
		return ((const ProtobufCBinaryData *)p)->len == 0;
	case PROTOBUF_C_TYPE_MESSAGE:
		return *(ProtobufCMessage *const *)p == NULL;
	case PROTOBUF_C_TYPE_FLOAT:
		return *(const float *)p == 0;
	case PROTOBUF_C_TYPE_DOUBLE:
		return *(const double *)p == 0;
	default: {
		static const uint8_t zero[8];
		return memcmp(p, zero, element_size(f->type)) == 0;
	}
	}
}

static bool field_present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                          const void *p)
{
	const char *base = (const char *)m;

	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
		return *(const uint32_t *)(base + f->quantifier_offset) == f->id;
	if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset != 0 &&
	    f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE)
		return *(const protobuf_c_boolean *)(base + f->quantifier_offset);
	return f->label == PROTOBUF_C_LABEL_REQUIRED || !is_default(f, p);
}

static json_t *message_to_json(const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	json_t *obj = json_object();

	for (unsigned i = 0; obj != NULL && i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const char *p = (const char *)m + f->offset;
		json_t *v;

		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
			const char *arr = *(char *const *)p;
			if (n == 0)
				continue;
			v = json_array();
			for (size_t k = 0; v != NULL && k < n; k++) {
				if (json_array_append_new(v, value_json(f, arr + k * element_size(f->type)))) {
					json_decref(v);
					v = NULL;
				}
			}
		} else if (!field_present(m, f, p)) {
			continue;
		} else {
			v = value_json(f, p);
		}
		if (v == NULL || json_object_set_new(obj, f->name, v) != 0) {
			json_decref(obj);
			obj = NULL;
		}
	}
	return obj;
}

char *gwjson_from_message(const ProtobufCMessage *m, size_t *len)
{
	json_t *obj = message_to_json(m);
	char *s;

	if (obj == NULL)
		return NULL;
	s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(obj);
	if (s != NULL)
		*len = strlen(s);
	return s;
}
