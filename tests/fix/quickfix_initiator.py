"""A real FIX engine (QuickFIX) as initiator against `eod ingest --fix-session`.

Logs on, sends execution reports, opens a sequence gap on its own side (the acceptor must
ask for a resend, which QuickFIX answers from its store), logs out, then starts again with
the same store so the session resumes with the persisted sequence numbers.

    python quickfix_initiator.py PORT WORKDIR    -> prints a JSON summary, exit 0 on success
"""
import gc
import json
import os
import sys
import time

import quickfix as fix


class App(fix.Application):
    def __init__(self):
        super().__init__()
        self.session_id = None
        self.logged_on = False
        self.logons = 0
        self.resend_requests = 0

    def onCreate(self, session_id):
        self.session_id = session_id

    def onLogon(self, session_id):
        self.logged_on = True
        self.logons += 1

    def onLogout(self, session_id):
        self.logged_on = False

    def toAdmin(self, message, session_id):
        pass

    def fromAdmin(self, message, session_id):
        msg_type = fix.MsgType()
        message.getHeader().getField(msg_type)
        if msg_type.getValue() == fix.MsgType_ResendRequest:
            self.resend_requests += 1

    def toApp(self, message, session_id):
        pass

    def fromApp(self, message, session_id):
        pass


def wait_for(predicate, what, seconds=20.0):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def fill(session_id, exec_id, qty, price):
    message = fix.Message()
    header = message.getHeader()
    header.setField(fix.BeginString(fix.BeginString_FIX44))
    header.setField(fix.MsgType(fix.MsgType_ExecutionReport))
    message.setField(fix.OrderID("O-" + exec_id))
    message.setField(fix.ExecID(exec_id))
    message.setField(fix.ExecType(fix.ExecType_TRADE))
    message.setField(fix.OrdStatus(fix.OrdStatus_FILLED))
    message.setField(fix.Symbol("QFX"))
    message.setField(fix.Side(fix.Side_BUY))
    message.setField(fix.LastQty(qty))
    message.setField(fix.LastPx(price))
    message.setField(fix.StringField(60, "20261125-21:00:00.000"))
    message.setField(fix.Account("QF-TRADER"))
    fix.Session.sendToTarget(message, session_id)


def settings_file(port, workdir):
    path = os.path.join(workdir, "initiator.cfg")
    with open(path, "w") as f:
        f.write(f"""[DEFAULT]
ConnectionType=initiator
ReconnectInterval=1
FileStorePath={workdir}/store
FileLogPath={workdir}/log
NonStopSession=Y
UseDataDictionary=N
HeartBtInt=30
SocketConnectHost=127.0.0.1
SocketConnectPort={port}
ResetOnLogon=N
ResetOnLogout=N
ResetOnDisconnect=N

[SESSION]
BeginString=FIX.4.4
SenderCompID=QFCLIENT
TargetCompID=EOD
""")
    return path


def connect(app, path):
    settings = fix.SessionSettings(path)
    initiator = fix.SocketInitiator(app, fix.FileStoreFactory(settings), settings, fix.FileLogFactory(settings))
    initiator.start()
    wait_for(lambda: app.logged_on, "logon")
    return initiator


def main():
    port, workdir = int(sys.argv[1]), sys.argv[2]
    path = settings_file(port, workdir)
    app = App()
    sent = []

    initiator = connect(app, path)
    for n in (1, 2, 3):
        fill(app.session_id, f"Q-{n}", 100 * n, 10.5)
        sent.append(f"Q-{n}")
    session = fix.Session.lookupSession(app.session_id)
    # Open a gap of three sequence numbers on our side: the acceptor must ask for them.
    session.setNextSenderMsgSeqNum(session.getExpectedSenderNum() + 3)
    fill(app.session_id, "Q-4", 400, 11.0)
    sent.append("Q-4")
    wait_for(lambda: app.resend_requests > 0, "a ResendRequest from the acceptor")
    fill(app.session_id, "Q-5", 500, 11.5)
    sent.append("Q-5")
    time.sleep(0.5)
    initiator.stop()
    wait_for(lambda: not app.logged_on, "logout")
    # Destroy the first initiator before the second registers the same SessionID: its
    # destructor would otherwise unregister the new session.
    del initiator
    gc.collect()

    # Same store: the second logon resumes the numbering instead of starting at 1.
    initiator = connect(app, path)
    fill(app.session_id, "Q-6", 600, 12.0)
    sent.append("Q-6")
    time.sleep(0.5)
    initiator.stop()

    print(json.dumps({"logons": app.logons, "resend_requests": app.resend_requests, "sent": sent}))


if __name__ == "__main__":
    main()
