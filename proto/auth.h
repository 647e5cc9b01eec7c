/* proto/auth.h: how a client proves who it is. nanomsg hides the Unix
 * socket of each connection, so the daemon cannot read the peer's
 * credentials from the request socket; beside it, "<socket>.auth" is a
 * plain AF_UNIX stream socket. A client connects there, the daemon reads
 * the kernel's SO_PEERCRED (pid, uid) of that connection, writes a fresh
 * random session token of GPTQD_TOKEN_BYTES and closes. Every request then
 * carries the token (Request.session): the daemon knows the verified pid
 * and uid behind it for as long as that process lives. */
#ifndef GPTQ_PROTO_AUTH_H
#define GPTQ_PROTO_AUTH_H

#define GPTQD_AUTH_SUFFIX ".auth"
#define GPTQD_TOKEN_BYTES 16

#endif
