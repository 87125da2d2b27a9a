/*
 * What the agent and its clients agree on (DESIGN §3, §5): where the control
 * socket is, how large one of its messages may be, where the state file is
 * and which schema it carries. The daemon serves these; `sockwarden status`
 * reads them; libsockwarden has its own copy of the socket's names in its
 * public header, since it uses nothing of the agent.
 */
#ifndef SW_PROTOCOL_H
#define SW_PROTOCOL_H

#define CONTROL_MSG_MAX 4096
#define CONTROL_ABSTRACT_NAME "sockwarden"
#define CONTROL_PATH_DEFAULT "/run/sockwarden/control.sock"

#define STATE_FILE_DEFAULT "/run/sockwarden/state.json"
#define STATE_SCHEMA_VERSION 1
#endif
