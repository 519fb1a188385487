/* httpreply.h - a whole libh2o response with a body (status and its
 * reason, content type, the body copied): http.c's endpoints and the
 * gateway's (gateway.c). */
#ifndef BOLLARD_SERVER_HTTPREPLY_H
#define BOLLARD_SERVER_HTTPREPLY_H

#include <string.h>

#include <h2o.h>

static inline const char *http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 412: return "Precondition Failed";
	case 429: return "Too Many Requests";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Internal Server Error";
	}
}

static inline void http_reply(h2o_req_t *req, int status, const char *type, const char *body,
                              size_t len)
{
	req->res.status = status;
	req->res.reason = http_reason(status);
	req->res.content_length = len;
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, type, strlen(type));
	h2o_send_inline(req, body, len); /* copies body */
}

#endif
