"""Generate the small synthetic sample dataset bundled with ticketflow.

This script writes ``sample_tickets.csv`` next to itself: about 420 fake IT /
customer-support tickets with the columns ``ticket_id, subject, body, tags,
category, priority, answer``. The real ticket data is never committed to the
repository, so this sample lets ``make run``, the tests and the examples work
anywhere without access to it.

The data is fully synthetic and deterministic (``random.Random(7)``), built
from templates with slot fillers, varied openings and sign-offs, casual
phrasing and occasional typos. To keep it realistic it deliberately contains:

* ambiguous tickets whose text mixes two queues (labelled with one of them),
* a little label noise on category (~4%) and priority (~5%),
* a handful of bodies with fake e-mail addresses / 555 phone numbers (for
  personal-data masking tests), using only example.com / example.org,
* three exact duplicate tickets that differ only in ``ticket_id``.

Usage:
    python data/make_sample.py
"""

import csv
import random
from functools import partial
from pathlib import Path

SEED = 7
OUT_PATH = Path(__file__).resolve().parent / "sample_tickets.csv"
COLUMNS = ["ticket_id", "subject", "body", "tags", "category", "priority", "answer"]
CATEGORIES = ["Hardware", "Access", "Network", "Software", "Billing", "HR Support", "Purchase"]
PRIORITIES = ["high", "medium", "low"]
HINTS = {"h": "high", "m": "medium", "l": "low"}

# Rows generated from clean (single-category) templates, per category.
CLEAN_COUNTS = {
    "Hardware": 66,
    "Access": 61,
    "Network": 58,
    "Software": 57,
    "Billing": 49,
    "HR Support": 45,
    "Purchase": 47,
}
N_AMBIGUOUS = 34
N_DUPLICATES = 3
CATEGORY_NOISE = 0.04
PRIORITY_NOISE = 0.05
ANSWER_RATE = 0.70
SUBJECT_MATCH = 0.8

FILLERS = {
    "name": [
        "Dana",
        "Priya",
        "Marcus",
        "Lena",
        "Tom",
        "Aisha",
        "Jorge",
        "Mei",
        "Olga",
        "Sam",
        "Kwame",
        "Ines",
        "Felix",
        "Hannah",
        "Raj",
        "Noor",
        "Erik",
        "Sofia",
        "Ben",
        "Yuki",
    ],
    "manager": ["Karen", "Ahmed", "Julia", "Pete", "Laura", "Chen", "Nadia", "Oscar", "Ruth", "Vikram"],
    "device": [
        "laptop",
        "ThinkPad T14",
        "Dell Latitude 5440",
        "MacBook Pro",
        "Surface Pro 9",
        "HP EliteBook 840",
    ],
    "app": [
        "Outlook",
        "Teams",
        "Excel",
        "Zoom",
        "Slack",
        "Adobe Acrobat",
        "SAP GUI",
        "Salesforce",
        "Chrome",
        "VS Code",
        "Jira",
        "AutoCAD",
    ],
    "system": [
        "SAP",
        "Workday",
        "Salesforce",
        "the CRM",
        "the intranet",
        "SharePoint",
        "Jira",
        "the ERP",
        "ServiceNow",
        "Confluence",
    ],
    "dept": [
        "Finance",
        "Sales",
        "Marketing",
        "Legal",
        "Logistics",
        "Customer Service",
        "Engineering",
        "Procurement",
        "Facilities",
        "Research",
    ],
    "time": ["9am", "10:30", "noon", "2pm", "3 pm", "4:30pm", "end of day", "11 o'clock"],
    "code": [
        "0x80070005",
        "E-1042",
        "ERR_CONNECTION_TIMED_OUT",
        "404",
        "503",
        "0xC004F074",
        "809",
        "691",
        "E52",
        "0x800CCC0E",
        "403 Forbidden",
        "50.4",
    ],
    "room": ["3", "12", "104", "2.17", "B-210", "415", "C3", "301"],
    "floor": ["2nd", "3rd", "4th", "ground", "5th", "1st"],
    "printer": ["HP LaserJet M507", "Canon iR-ADV C5535", "Brother HL-L6200", "Xerox VersaLink C405"],
    "vendor": ["Dell", "Lenovo", "CDW", "Insight", "Staples", "Bechtle", "SHI"],
    "site": ["Berlin office", "London office", "Austin site", "warehouse", "Lyon office", "Toronto office"],
    "day": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "the 1st", "the 15th"],
    "month": ["January", "March", "April", "June", "August", "September", "October", "November"],
}

OPENINGS = [
    "",
    "",
    "",
    "Hi,",
    "Hello,",
    "Hi team,",
    "Hello IT,",
    "Hey,",
    "Good morning,",
    "Dear support,",
    "hi there,",
    "Hi all,",
    "Hello support team,",
]
CLOSINGS = [
    "",
    "",
    "",
    "Thanks",
    "Thanks, {name}",
    "Regards, {name}",
    "Cheers, {name}",
    "thx",
    "Thank you in advance.",
    "Best, {name}",
    "- {name}",
    "Many thanks!",
    "Kind regards, {name}",
]
GENERIC_DETAILS = [
    "Screenshot attached.",
    "Not sure if this is the right queue.",
    "Let me know if you need anything else.",
]
IT_DETAILS = [
    "I already restarted twice.",
    "This started on {day}.",
    "A colleague has the same problem.",
    "Tried the steps from the intranet page, didn't help.",
    "It worked fine last week.",
]
CATEGORY_DETAILS = {
    "Hardware": ["Asset tag is AT-{num5}.", "I'm at desk {room} on the {floor} floor.", *IT_DETAILS],
    "Access": ["My username is the usual first.last.", "My manager {manager} can approve.", *IT_DETAILS],
    "Network": ["I'm in the {site}.", "Other sites seem fine as far as I know.", *IT_DETAILS],
    "Software": ["Reinstalling didn't help.", "I'm on the version from the last rollout.", *IT_DETAILS],
    "Billing": ["Our customer number is C-{num5}.", "The account owner is {name}.", "We pay by card."],
    "HR Support": ["My employee ID is {num5}.", "I'm in the {dept} team.", "Sorry if wrong place."],
    "Purchase": ["Cost center is CC-{num4}.", "Budget is already approved.", "Deliver to the {site} please."],
}
MODIFIERS = {
    "high": [
        "This is urgent.",
        "URGENT - the whole team is blocked.",
        "I cannot work until this is fixed.",
        "All users in {dept} are affected.",
        "We have a deadline at {time} today.",
        "Please treat as high priority, client demo at {time}.",
        "asap please!!",
    ],
    "medium": [
        "Would be good to get this sorted this week.",
        "I can work around it for now but it's annoying.",
        "Please have a look when you can today or tomorrow.",
    ],
    "low": [
        "No rush.",
        "Whenever you have a moment.",
        "Just a quick question.",
        "not urgent, thanks",
        "Low priority, can wait until next week.",
    ],
}
MODIFIER_RATE = {"high": 0.55, "medium": 0.25, "low": 0.4}
TYPOS = {
    "the": "teh",
    "receive": "recieve",
    "password": "pasword",
    "printer": "priner",
    "because": "becuase",
    "access": "acess",
    "please": "pls",
    "laptop": "labtop",
    "working": "wokring",
    "again": "agian",
    "account": "acount",
    "doesn't": "doesnt",
    "can't": "cant",
    "since": "sicne",
    "invoice": "invoce",
}
PII_SNIPPETS = [
    "You can call me at +1 555 0134 if that's easier.",
    "reach me at dana.k@example.com, I'm out of the office otherwise",
    "My mobile is (555) 010-4477.",
    "Please reply to m.alvarez@example.org instead of my work address.",
    "Call back on 555-0192 please.",
    "cc my colleague priya.s@example.com and ring me on +1 555 0188.",
]

# Per category: intents. Within an intent, subjects[i] and answers[i] belong to bodies[i] (extra subjects
# are generic); bodies are (priority hint, text) pairs.
INTENTS = {
    "Hardware": [
        {
            "tags": ["printer", "hardware", "paper", "office"],
            "subjects": [
                "Printer jammed",
                "Printer in room {room} keeps jamming",
                "can't print, paper stuck",
                "{printer} showing error {code}",
                "printer problem",
            ],
            "bodies": [
                ("m", "Printer jammed again."),
                (
                    "m",
                    "The printer in room {room} keeps jamming paper. I cleared the tray but it jams again "
                    "after a few pages.",
                ),
                (
                    "m",
                    "can't print, paper stuck somewhere inside the {printer} on the {floor} floor and the "
                    "display says {code}",
                ),
                (
                    "h",
                    "The {printer} for the whole {dept} department is down with error {code} and we need "
                    "to print contracts before {time}.",
                ),
            ],
            "answers": [
                "Cleared the jam in tray 2 and replaced the worn pickup roller; test page printed fine.",
                "Removed a torn sheet stuck behind the rear panel. Please use the 80g paper from the supply room.",
                "Hi {name}, opened the rear panel and removed the stuck sheet; error {code} is cleared.",
                "Hi {name}, the fuser unit was faulty - replaced it and the printer is back online.",
            ],
        },
        {
            "tags": ["laptop", "battery", "hardware"],
            "subjects": [
                "Laptop won't turn on",
                "{device} battery drains really fast",
                "laptop dead after weekend",
                "Charger not working",
                "laptop issue",
            ],
            "bodies": [
                (
                    "h",
                    "My {device} won't turn on at all, no lights, nothing. I have a client presentation "
                    "at {time} and all my files are on it.",
                ),
                ("m", "Battery on my {device} goes from 100% to 20% in about an hour. It's only a year old."),
                ("m", "laptop wont power on after the weekend, tried a different charger from a colleague, same thing"),
                (
                    "l",
                    "The charger for my {device} gets very hot and sometimes stops charging. Could I get "
                    "a replacement at some point?",
                ),
            ],
            "answers": [
                "Did a hard reset (held power 30s with the charger removed); the laptop boots normally now.",
                "Battery health was at 41%, replaced the battery under warranty.",
                "Mainboard failure confirmed, gave you a replacement laptop and restored your files.",
                "Swapped the power adapter - the old one had a damaged cable.",
            ],
        },
        {
            "tags": ["monitor", "display", "hardware"],
            "subjects": [
                "Second monitor not detected",
                "Screen flickering",
                "Cracked laptop screen",
                "Dead pixels on monitor",
                "monitor stays black after docking",
            ],
            "bodies": [
                (
                    "m",
                    "My second monitor isn't detected anymore when I plug in the docking station. "
                    "Windows only shows one display.",
                ),
                ("m", "The screen on my {device} flickers every few seconds, especially when I move the lid."),
                (
                    "h",
                    "I dropped my laptop and the screen is cracked, I can barely read anything. I cannot "
                    "work like this.",
                ),
                (
                    "l",
                    "One of the monitors at desk {room} has a few dead pixels. Not a big deal but maybe "
                    "swap it when you're around?",
                ),
            ],
            "answers": [
                "Updated the dock firmware and display driver; both monitors are detected again.",
                "Replaced the display cable, the flicker is gone.",
                "Screen replacement booked with {vendor}; loaner laptop handed over in the meantime.",
                "Swapped the monitor for a spare from stock.",
            ],
        },
        {
            "tags": ["peripherals", "keyboard", "mouse", "headset"],
            "subjects": [
                "Keyboard keys not working",
                "mouse stopped working",
                "Headset mic not picking up",
                "Webcam not recognised",
                "peripheral not working",
            ],
            "bodies": [
                ("l", "A few keys on my keyboard (E and R) stick and sometimes don't register. Could I get a new one?"),
                ("m", "my wireless mouse stopped working, changed the batteries already, still nothing"),
                (
                    "m",
                    "People can't hear me in calls, the headset mic seems dead. Tried it on two different USB ports.",
                ),
                (
                    "l",
                    "The built-in webcam on my {device} isn't recognised anymore, device manager shows a "
                    "yellow warning. I mostly use an external one so low priority.",
                ),
            ],
            "answers": [
                "Dropped off a replacement keyboard at your desk.",
                "Re-paired the USB receiver; the mouse works again.",
                "The headset was faulty, replaced it with a new one from stock.",
                "Reinstalled the camera driver, the webcam shows up again.",
            ],
        },
        {
            "tags": ["phone", "mobile", "hardware"],
            "subjects": [
                "Desk phone has no dial tone",
                "company phone screen broken",
                "Mobile phone won't charge",
            ],
            "bodies": [
                ("m", "The desk phone in room {room} has no dial tone since this morning."),
                (
                    "h",
                    "My company mobile screen broke and I'm on call tonight for the {system} rota, I "
                    "need a working phone asap.",
                ),
                (
                    "l",
                    "My work phone charging port is loose, I have to wiggle the cable. Can someone look "
                    "at it next time they're on site?",
                ),
            ],
            "answers": [
                "The phone cable was unplugged at the wall port; reconnected and tested a call.",
                "Hi {name}, a replacement phone is ready for pickup at the IT desk, SIM already moved over.",
                "Cleaned lint out of the charging port, it charges normally now.",
            ],
        },
    ],
    "Access": [
        {
            "tags": ["password", "account", "login"],
            "subjects": [
                "Account locked out",
                "Forgot my password for {system}",
                "locked out of my account again",
                "Password reset",
                "login problem",
            ],
            "bodies": [
                (
                    "h",
                    "I'm locked out of my account after too many attempts and can't log in to anything. "
                    "Meeting with {dept} at {time}.",
                ),
                ("m", "Forgot my password for {system}, the self-service reset link gives error {code}."),
                ("m", "locked out again.. password expired over the weekend and now it won't accept the new one"),
                ("l", "Could you reset my {system} password? I don't use it often and can't remember it."),
            ],
            "answers": [
                "Unlocked the account and sent a temporary password by SMS; please change it at first login.",
                "Hi {name}, reset done. The self-service portal had a sync issue which is now fixed.",
                "The new password hadn't synced to all systems; forced a sync and unlocked the account.",
                "Password for {system} reset, the temporary one was sent to you by SMS.",
            ],
        },
        {
            "tags": ["permissions", "shared-drive", "access"],
            "subjects": [
                "Access to shared folder",
                "Access denied on {system}",
                "Need permissions for {dept} SharePoint",
                "request: role change in {system}",
                "access request",
            ],
            "bodies": [
                ("m", "I need access to the {dept} shared folder, my manager {manager} approved it."),
                (
                    "h",
                    'Getting "access denied" on {system} since this morning, I can\'t process orders and '
                    "the whole team is waiting on me.",
                ),
                ("l", "Could I get read access to the {dept} SharePoint site? Just need to look at some old reports."),
                (
                    "m",
                    "{system} says I don't have the right role to approve requests, I took over from "
                    "{manager} last week.",
                ),
            ],
            "answers": [
                "Added you to the {dept} folder group; access works after you log out and back in.",
                "A role sync job had failed overnight; re-ran it and your access in {system} is back.",
                "Read access to the {dept} site granted. It can take up to 15 minutes to sync.",
                "Role updated in {system} after approval from your manager.",
            ],
        },
        {
            "tags": ["account", "onboarding", "new-user"],
            "subjects": [
                "Create account for new starter",
                "Account setup for contractor",
                "New user accounts for interns",
                "New user account for {manager}'s team",
            ],
            "bodies": [
                ("m", "We have a new starter in {dept} on {day}, please create an account and email address."),
                (
                    "h",
                    "Contractor started today and still has no login, he is just sitting there. Can you "
                    "create the account urgently?",
                ),
                ("l", "Next month we get two interns in {dept}, what's the process to request accounts for them?"),
            ],
            "answers": [
                "Account and mailbox created; credentials sent to the hiring manager.",
                "Contractor account created, expiring at the end of the contract; details sent to you.",
                "Hi {name}, please use the new-user form on the portal at least 5 days before the start.",
            ],
        },
        {
            "tags": ["mfa", "authenticator", "login"],
            "subjects": [
                "Authenticator app on new phone",
                "Not receiving 2FA codes",
                "lost my phone - MFA",
                "hardware key for MFA?",
                "MFA not working",
            ],
            "bodies": [
                (
                    "m",
                    "I got a new phone and the authenticator app doesn't have my work account anymore, "
                    "so I can't approve sign-ins.",
                ),
                ("h", "Not getting any MFA codes by SMS, I'm completely blocked from email and {system}."),
                ("m", "lost my phone yesterday, need the MFA reset so I can log in from my laptop"),
                ("l", "Is it possible to use a hardware key instead of the authenticator app for MFA?"),
            ],
            "answers": [
                "Reset your MFA registration; you'll be asked to set up the authenticator at next sign-in.",
                "The phone number on file was outdated, updated it and codes arrive again.",
                "Blocked the lost device and reset MFA, you can register the new phone now.",
                "Hardware keys are supported - requested one for you, it arrives within a week.",
            ],
        },
        {
            "tags": ["offboarding", "account", "security"],
            "subjects": [
                "Disable account for leaver",
                "Remove access for former employee",
                "Remove me from distribution list",
                "Leaver - last day {day}",
            ],
            "bodies": [
                ("m", "{manager} leaves the company on {day}, please disable the account and forward mail to me."),
                (
                    "h",
                    "A former employee still has access to {system}, please remove it immediately, this "
                    "is a security concern.",
                ),
                ("l", "Please remove me from the old {dept} distribution list, I moved teams."),
            ],
            "answers": [
                "Account scheduled for deactivation on the last working day, mail forwarding set up.",
                "Access revoked in {system} and all sessions terminated.",
                "Removed you from the list.",
            ],
        },
    ],
    "Network": [
        {
            "tags": ["wifi", "wireless", "network"],
            "subjects": [
                "wifi keeps dropping",
                "No wireless on {floor} floor",
                "Guest wifi password?",
                "connected but no internet",
                "WiFi not working",
            ],
            "bodies": [
                ("m", "Wifi keeps dropping every 10 minutes or so on my {device}, cable works fine."),
                ("h", "No wifi at all on the {floor} floor, nobody here can connect. All users in {dept} affected."),
                ("l", "What's the password for the guest wifi? We have visitors on {day}."),
                ("m", 'my laptop sees the network but says "No internet, secured"'),
            ],
            "answers": [
                "Removed the old wifi profile and re-enrolled the certificate; connection is stable now.",
                "The access point on your floor had crashed; rebooted it and updated the firmware.",
                "Guest wifi details are on the reception screen; the password changes weekly.",
                "Proxy settings on your laptop were wrong, reset them and the internet works.",
            ],
        },
        {
            "tags": ["vpn", "remote", "network"],
            "subjects": [
                "Cannot connect to VPN from home",
                "VPN disconnects constantly",
                "vpn error {code}",
                "VPN drops when laptop sleeps",
                "VPN not connecting",
            ],
            "bodies": [
                (
                    "h",
                    "Can't connect to VPN from home, getting error {code}. I cannot work at all and have "
                    "a deadline at {time}.",
                ),
                ("m", "VPN connects but drops every half hour, I have to log in again each time."),
                ("m", "vpn says authentication failed, error {code}, worked fine yesterday"),
                ("l", "Is there a way to keep the VPN connected when the laptop goes to sleep?"),
            ],
            "answers": [
                "The VPN gateway certificate had expired; renewed it, please reconnect.",
                "Hi {name}, updated the VPN client to the latest version - the drops should stop.",
                "Your VPN user certificate had expired, issued a new one.",
                "That's by design for security, but the idle timeout is now 2 hours.",
            ],
        },
        {
            "tags": ["outage", "internet", "network"],
            "subjects": [
                "Network outage in {site}",
                "Internet very slow",
                "slow connection to {system}",
                "slow internet at my desk",
                "Whole office offline",
            ],
            "bodies": [
                (
                    "h",
                    "Network outage in the {site} - no internet, no phones, nothing. All users affected since {time}.",
                ),
                ("m", "Internet has been really slow since this morning, downloads crawl and video calls freeze."),
                ("m", "Connection to {system} is super slow from our floor only, other floors seem ok."),
                ("l", "Speed test shows 20 Mbit at my desk, is that normal? Feels slower than before."),
            ],
            "answers": [
                "ISP fiber cut near the site; traffic failed over to the backup line, full service restored.",
                "A switch uplink was flapping, replaced the module. Speeds are back to normal.",
                "A QoS rule on the floor switch was misconfigured; fixed it.",
                "20 Mbit is below spec for your desk; the patch cable was faulty and has been replaced.",
            ],
        },
        {
            "tags": ["dns", "network-drive", "network"],
            "subjects": [
                "Mapped drive disappeared",
                "Can't reach intranet",
                "website not loading - DNS?",
                "Network drive mapping request",
                "Network drive not mapping",
            ],
            "bodies": [
                ("m", "The H: drive doesn't map anymore at login, I have to add it manually every day."),
                ("m", "Intranet won't load, browser says {code} but external sites work."),
                ("h", "None of us can reach {system} by name, only by IP address. Looks like DNS, orders are stuck."),
                ("l", "Can you add the {dept} archive share as a mapped drive for me?"),
            ],
            "answers": [
                "Fixed the login script so the drive maps automatically again.",
                "Your browser had an old proxy exception; cleared it and the intranet loads.",
                "A stale DNS record was cleaned up and the cache flushed; name resolution works again.",
                "Mapped the archive share as drive R: for you.",
            ],
        },
        {
            "tags": ["ethernet", "cabling", "network"],
            "subjects": [
                "Network port dead at desk",
                "Extra network port in room {room}",
                "LAN down in room {room}",
                "Need a network cable",
            ],
            "bodies": [
                ("m", "The network port at desk {room} is dead, tried two different cables."),
                (
                    "l",
                    "Could someone patch an extra network port in meeting room {room}? We want a fixed screen there.",
                ),
                ("h", "The meeting room {room} network is down and we have the board call at {time}."),
            ],
            "answers": [
                "The port was not patched in the comms room; patched and tested.",
                "Patched the extra port and left a spare cable in the room.",
                "A cable loop took the switch port down; removed it and the room is back online.",
            ],
        },
    ],
    "Software": [
        {
            "tags": ["crash", "application", "software"],
            "subjects": [
                "{app} crashes when opening attachments",
                "{app} crashes on startup",
                "app freezes when saving",
                "{app} closes by itself",
                "{app} keeps crashing",
                "{app} not responding",
            ],
            "bodies": [
                ("m", "{app} crashes every time I open an attachment, error {code}."),
                ("h", "{app} crashes on startup for the whole {dept} team since this morning, we cannot work."),
                ("m", "{app} freezes for a minute whenever I save, then comes back. Really annoying."),
                (
                    "l",
                    "Sometimes {app} closes by itself at the end of the day, not a big problem but "
                    "thought I'd report it.",
                ),
            ],
            "answers": [
                "Cleared the local cache and repaired the installation; no more crashes.",
                "Rolled back the faulty add-in that was pushed last night, {app} starts normally again.",
                "Hi {name}, known bug in this version - updated you to the fixed release.",
                "Couldn't reproduce it; installed the latest patch, please reopen if it happens again.",
            ],
        },
        {
            "tags": ["install", "software-request", "software"],
            "subjects": [
                "Install {app}",
                "need {app} on my new laptop",
                "Please install Python on my machine",
                "Software installation request",
            ],
            "bodies": [
                ("l", "Could you install {app} on my {device}? I don't have admin rights."),
                ("m", "Need {app} on my new laptop, it was on the old one and I use it daily."),
                ("l", "Please install Python 3.11 and VS Code, my manager {manager} approved it."),
                (
                    "h",
                    "I need {app} installed before the client workshop at {time} today, the installer "
                    "asks for an admin password.",
                ),
            ],
            "answers": [
                "Installed remotely via Software Center; you'll find it in the start menu.",
                "Hi {name}, it's now available in the self-service Software Center, just click install.",
                "Python 3.11 and VS Code installed via Software Center.",
                "Installed it remotely before your workshop.",
            ],
        },
        {
            "tags": ["update", "windows", "software"],
            "subjects": [
                "Windows update failing",
                "update stuck at 30%",
                "{app} update broke my plugins",
                "{app} update popups",
                "Update error {code}",
            ],
            "bodies": [
                ("m", "Windows update fails every night with error {code} and keeps asking me to restart."),
                ("m", "update stuck at 30% for an hour now, can I turn off the laptop?"),
                ("m", "Since the latest {app} update my plugins are gone and the toolbar is empty."),
                ("l", "The {app} update notification pops up every hour, can it be scheduled for the weekend?"),
            ],
            "answers": [
                "Reset the Windows Update components and installed the pending patch manually.",
                "Yes, a forced restart was safe - the update completed after the reboot.",
                "Re-registered the plugins after the update; the toolbar is back.",
                "Moved your device to the weekend update ring.",
            ],
        },
        {
            "tags": ["outlook", "email", "software"],
            "subjects": [
                "Outlook not syncing",
                "emails stuck in outbox",
                "Shared mailbox not showing",
                "Outlook search doesn't find anything",
            ],
            "bodies": [
                ("m", "Outlook hasn't synced since {time}, new emails don't show up but they arrive on my phone."),
                ("h", "Emails stuck in outbox and I need to send the tender documents before the {time} deadline!"),
                ("m", "The {dept} shared mailbox disappeared from my Outlook after the restart."),
                ("l", "Outlook search never finds older emails, is there a setting I'm missing?"),
            ],
            "answers": [
                "Rebuilt the Outlook profile; mail syncs again.",
                "A 40 MB attachment was blocking the outbox - removed it and the rest went out.",
                "Re-added the shared mailbox to your profile.",
                "Rebuilt the search index; older mails show up in results now.",
            ],
        },
        {
            "tags": ["teams", "excel", "software"],
            "subjects": [
                "Teams no audio",
                "Excel macro error",
                "custom background in Teams",
                "Excel file won't open",
                "Teams camera not working in calls",
            ],
            "bodies": [
                ("m", "In Teams people can't hear me but the mic works in other apps."),
                ("m", "Our monthly report macro fails with runtime error 1004 after the Office update."),
                ("l", "How do I set a custom background in Teams?"),
                (
                    "h",
                    "Excel won't open the quarterly file for {dept}, says it is corrupt, and the board "
                    "needs it at {time}.",
                ),
            ],
            "answers": [
                "Selected the right audio device in Teams settings and cleared the Teams cache.",
                "Updated the macro to the new Office object model, it runs without errors now.",
                "Click the effects button before joining a call; guide link sent.",
                "Restored the file from the previous version in SharePoint; it opens fine.",
            ],
        },
    ],
    "Billing": [
        {
            "tags": ["invoice", "billing", "dispute"],
            "subjects": [
                "Wrong amount on invoice {inv}",
                "Overcharged this month",
                "question about my invoice",
                "Invoice {inv} is incorrect",
            ],
            "bodies": [
                (
                    "m",
                    "Invoice {inv} shows {amount} but our contract says a lower monthly fee. Please check and correct.",
                ),
                ("m", "we were billed for {n} seats but only have 5 users, can you fix the invoice"),
                ("l", 'Can you explain the line "service fee" on invoice {inv}? Just want to understand it.'),
                (
                    "h",
                    "Invoice {inv} is {amount} too high and our finance team closes the books at {time} "
                    "today, we need a corrected invoice urgently.",
                ),
            ],
            "answers": [
                "Issued a credit note for the difference and a corrected invoice.",
                "Hi {name}, the seat count has been adjusted and the invoice reissued.",
                "The service fee covers premium support; details are in section 4 of your contract.",
                "Corrected invoice sent within the hour, credit note attached.",
            ],
        },
        {
            "tags": ["refund", "payment", "billing"],
            "subjects": [
                "Charged twice",
                "Refund request",
                "refund still not received",
                "Partial refund on downgrade?",
                "Double payment taken",
            ],
            "bodies": [
                (
                    "h",
                    "My card was charged twice for {amount} this month. This is urgent, it put our "
                    "account into overdraft.",
                ),
                ("m", "I cancelled on {day} but was still charged {amount}. I'd like a refund please."),
                ("m", "refund for {inv} was promised {n} days ago and still nothing on my statement"),
                ("l", "If I downgrade my plan mid-month, do I get a partial refund?"),
            ],
            "answers": [
                "Duplicate charge refunded; it shows on your statement within 3-5 business days.",
                "Refund of {amount} processed today, reference RF-{num5}.",
                "The refund was stuck in review; released it today.",
                "Yes, downgrades are prorated and credited on the next invoice.",
            ],
        },
        {
            "tags": ["payment", "credit-card", "account"],
            "subjects": [
                "Update credit card",
                "Payment failed",
                "Change payment method",
                "Card declined on renewal",
            ],
            "bodies": [
                ("m", "Our card expires this month, how do we update the payment method on the account?"),
                ("h", "Payment failed and now the account shows suspended, our team can't use the service!"),
                ("l", "Can we switch from card to bank transfer for future invoices?"),
                ("m", "The renewal payment was declined with code {code} but the card is fine."),
            ],
            "answers": [
                "You can update the card under Billing > Payment methods; I've sent you a secure link too.",
                "Payment retried successfully and the account is active again.",
                "Switched the account to bank transfer; bank details are on the next invoice.",
                "The bank flagged the charge; after you approved it we retried and it went through.",
            ],
        },
        {
            "tags": ["invoice", "tax", "documents"],
            "subjects": [
                "Need copy of invoice",
                "VAT number missing on invoice",
                "Invoices for {month}",
                "Billing address change",
            ],
            "bodies": [
                ("l", "Could you send me a PDF copy of invoice {inv}? Our accountant needs it."),
                ("m", "Our VAT number is missing on the last {n} invoices, we need them reissued for the tax return."),
                ("l", "Please send all invoices from {month} to our accounts payable mailbox."),
                ("m", "We moved offices, please update the billing address before the next invoice."),
            ],
            "answers": [
                "Sent the PDF copy by email; it's also downloadable in the customer portal.",
                "Added the VAT number to the account and reissued the invoices.",
                "Invoices from {month} sent to your accounts payable mailbox.",
                "Billing address updated for all future invoices.",
            ],
        },
        {
            "tags": ["subscription", "pricing", "billing"],
            "subjects": [
                "Annual vs monthly billing",
                "Cancel subscription",
                "Non-profit discount?",
                "Question about pricing",
            ],
            "bodies": [
                ("l", "What would the price be if we switched to annual billing for {n} users?"),
                ("m", "Please cancel our subscription at the end of the current period and confirm by email."),
                ("l", "do you offer discounts for non-profits?"),
            ],
            "answers": [
                "Annual billing saves about 15%; a quote for your user count is attached.",
                "Subscription set to cancel at the end of the period; confirmation sent.",
                "Yes, registered non-profits get 20% off; the application form was sent by email.",
            ],
        },
    ],
    "HR Support": [
        {
            "tags": ["payroll", "payslip", "salary"],
            "subjects": [
                "Salary not received",
                "Overtime missing from payslip",
                "Where can I find my payslip?",
                "Wrong tax code on payslip",
                "Payslip question",
            ],
            "bodies": [
                ("h", "My salary hasn't arrived this month and rent is due tomorrow. Can someone check urgently?"),
                ("m", "My overtime from {month} is missing from the payslip, about {n} hours."),
                ("l", "Where can I download my payslips from last year? Need them for a mortgage application."),
                ("m", "The tax code on my payslip looks wrong since {month}."),
            ],
            "answers": [
                "Payroll found a bank detail mismatch; an off-cycle payment was made today.",
                "Hi {name}, the overtime will be paid with next month's salary.",
                "Payslips are under My Pay in the employee portal, going back 3 years.",
                "Tax code corrected with the tax office; the difference is refunded next month.",
            ],
        },
        {
            "tags": ["leave", "vacation", "time-off"],
            "subjects": [
                "Vacation balance wrong",
                "Holiday request not approved",
                "Parental leave question",
                "sick leave - how to report",
            ],
            "bodies": [
                ("l", "My vacation balance shows {n} days but I think it should be more. Could you double-check?"),
                (
                    "m",
                    "I submitted a holiday request for {month} {n} days ago and it's still pending, my "
                    "manager {manager} is on leave.",
                ),
                ("l", "What's the process for parental leave? We're expecting in {month}."),
                ("m", "I'm sick since {day}, how do I report it and do I need a doctor's note?"),
            ],
            "answers": [
                "Carry-over days from last year were missing; balance corrected.",
                "Request reassigned to the deputy approver and approved.",
                "The parental leave guide is on the HR page; I've booked you a call with your HR partner.",
                "Please report it in the portal under Absence; a doctor's note is needed from day 3.",
            ],
        },
        {
            "tags": ["benefits", "pension", "insurance"],
            "subjects": [
                "Benefits enrollment",
                "Pension contribution change",
                "Health insurance card",
                "gym membership benefit",
            ],
            "bodies": [
                ("m", "I missed the benefits enrollment window by two days, is there any way to still enroll?"),
                ("l", "How do I increase my pension contribution to {n}%?"),
                (
                    "h",
                    "My health insurance card hasn't arrived and I have surgery on {day}, I need the "
                    "policy number urgently.",
                ),
                ("l", "Is the gym membership still part of our benefits?"),
            ],
            "answers": [
                "Late enrollment approved as an exception, forms sent by email.",
                "Contribution changes are made in the benefits portal and apply from the next payroll.",
                "Policy number sent to you directly; the card is being reissued.",
                "Yes, the gym subsidy is still in place; details are on the benefits page.",
            ],
        },
        {
            "tags": ["contract", "personal-data", "documents"],
            "subjects": [
                "Change of address",
                "Employment certificate request",
                "Update bank details for salary",
                "Contract copy",
            ],
            "bodies": [
                ("m", "I moved, please update my home address in the system from next month."),
                ("m", "I need an employment certificate for my visa appointment on {day}."),
                (
                    "h",
                    "I changed banks, please update my bank details before payroll runs on {day} or my "
                    "salary will bounce.",
                ),
                ("l", "Could I get a copy of my signed contract? Can't find mine."),
            ],
            "answers": [
                "Address updated in the HR system.",
                "Employment certificate signed and sent as PDF.",
                "Bank details updated in time for this payroll run.",
                "A copy of your contract was sent to your inbox.",
            ],
        },
        {
            "tags": ["onboarding", "policy", "hr"],
            "subjects": [
                "Question about remote work policy",
                "Onboarding documents",
                "Training budget",
                "Probation review date",
            ],
            "bodies": [
                ("l", "Is there a policy on working from abroad for a couple of weeks?"),
                ("m", "New starter in {dept} hasn't received the onboarding documents and starts on {day}."),
                ("l", "How much training budget do we have per year and how do I apply?"),
                ("m", "When is my probation review? Nobody told me a date."),
            ],
            "answers": [
                "Working abroad is allowed up to 20 days a year with manager approval; policy link sent.",
                "Onboarding pack resent to the new starter's private email.",
                "Each employee has 1,500 per year; apply through the learning portal.",
                "Your manager schedules it in month 5; I've sent them a reminder.",
            ],
        },
    ],
    "Purchase": [
        {
            "tags": ["order", "hardware", "equipment"],
            "subjects": [
                "Order new laptop",
                "Request for new monitor",
                "Purchase request: {n} headsets",
                "Need equipment for new hire",
            ],
            "bodies": [
                ("m", "Please order a {device} for our new developer starting on {day}."),
                ("l", "I'd like to request a second monitor for my desk, my manager {manager} approved."),
                ("m", "We need {n} headsets for the {dept} team, the old ones are falling apart."),
                ("h", "New hire starts on {day} and we still have no laptop ordered, can you expedite?"),
            ],
            "answers": [
                "Ordered from {vendor}, PO-{num4}; expected delivery in 5 business days.",
                "Second monitor approved and ordered, delivery to your desk next week.",
                "{n} headsets ordered from {vendor}.",
                "Hi {name}, order placed with express shipping, it should arrive before the start date.",
            ],
        },
        {
            "tags": ["license", "software", "order"],
            "subjects": [
                "Additional {app} licenses needed",
                "License renewal",
                "Need a quote for {app}",
                "Buy {app} license",
            ],
            "bodies": [
                ("m", "We need {n} more {app} licenses for the {dept} team, cost center CC-{num4}."),
                (
                    "h",
                    "Our {app} licenses expire on {day} and the renewal hasn't been ordered, the team "
                    "will be locked out.",
                ),
                ("l", "Can you get a quote for {app} for {n} users? Just budgeting for next year."),
            ],
            "answers": [
                "Licenses purchased and assigned; they show up in your account within an hour.",
                "Renewal PO approved and sent to the reseller.",
                "Quote from {vendor} attached.",
            ],
        },
        {
            "tags": ["purchase-order", "delivery", "vendor"],
            "subjects": [
                "Status of order PO-{num4}",
                "Where is my order?",
                "PO-{num4} not delivered",
                "Wrong items delivered",
                "Delivery delayed",
            ],
            "bodies": [
                ("m", "Order PO-{num4} was placed {n} weeks ago and still hasn't arrived. Any update from {vendor}?"),
                ("l", "Just checking on the status of PO-{num4}."),
                ("h", "PO-{num4} hasn't been delivered and the event is on {day}, can we escalate with {vendor}?"),
                ("m", "we received the wrong model for our order, ordered docking stations, got USB hubs"),
            ],
            "answers": [
                "{vendor} confirmed shipment today, tracking number sent by email.",
                "It's in transit, expected on {day}.",
                "Escalated with {vendor}; they're sending it by courier before {day}.",
                "Return arranged with the supplier and the correct items reordered.",
            ],
        },
        {
            "tags": ["furniture", "office-supplies", "order"],
            "subjects": [
                "Ergonomic chair request",
                "Standing desk order",
                "Office supplies order",
                "Need a new office chair",
            ],
            "bodies": [
                ("l", "Could we order an ergonomic chair for me? Occupational health recommended it."),
                ("m", "Please order {n} standing desks for the {dept} area, budget approved by {manager}."),
                ("l", "We're running low on toner and paper for room {room}, can you put in an order?"),
                ("m", "My chair is broken, the backrest fell off. Can I get a new one ordered?"),
            ],
            "answers": [
                "Chair ordered from the approved catalogue, delivery next week.",
                "Standing desks ordered; facilities will install them.",
                "Supplies ordered, they'll be delivered to the mail room.",
                "Replacement chair ordered, the broken one will be collected.",
            ],
        },
        {
            "tags": ["vendor", "quote", "procurement"],
            "subjects": ["New vendor setup", "Quote comparison needed", "Approve purchase request"],
            "bodies": [
                ("m", "We want to buy from a new supplier, how do we get them set up as a vendor?"),
                ("m", "Need three quotes for {n} conference room cameras, can procurement help?"),
                ("h", "Purchase request PO-{num4} needs approval today or we lose the discount from {vendor}."),
            ],
            "answers": [
                "Vendor onboarding form sent; setup takes about a week after the documents are in.",
                "Three quotes collected, comparison sheet attached.",
                "Approved, PO sent to {vendor} today.",
            ],
        },
    ],
}

# Tickets whose text fits two queues; each gets labelled with one of the pair at random.
AMBIGUOUS = [
    {
        "cats": ("Network", "Software"),
        "tags": ["vpn", "update", "laptop"],
        "subjects": ["Laptop can't reach VPN after software update", "VPN broken after update"],
        "bodies": [
            ("h", "My laptop can't reach the VPN after the new {app} update last night, error {code}."),
            ("m", "since the software update this morning the VPN client won't connect, before it was fine"),
        ],
        "answers": [
            "The update reset the VPN client config; reapplied the profile and it connects again.",
            "Rolled back the update on your laptop and the VPN connects; a fix comes with the next release.",
        ],
    },
    {
        "cats": ("Purchase", "Software"),
        "tags": ["license", "adobe"],
        "subjects": ["Need a new license purchased for Adobe", "Adobe license"],
        "bodies": [
            (
                "m",
                "Need a new license purchased for Adobe Acrobat, the trial on my {device} expired and I "
                "can't edit PDFs.",
            ),
            ("l", "Adobe says my license is invalid, do we need to buy a new one?"),
        ],
        "answers": [
            "Ordered an additional Acrobat license and activated it on your device.",
            "Assigned you a license from the pool, Acrobat is activated.",
        ],
    },
    {
        "cats": ("HR Support", "Access"),
        "tags": ["payroll", "login"],
        "subjects": ["Payroll portal login locked", "can't log in to payslip portal"],
        "bodies": [
            ("m", "payroll portal login locked, can't see my payslip. tried the reset but no email came."),
            ("h", "I'm locked out of the payroll portal and need to submit my hours before {time} today."),
        ],
        "answers": [
            "Unlocked your payroll portal account; reset email sent again.",
            "Unlocked the account and extended the hours submission deadline for you.",
        ],
    },
    {
        "cats": ("Billing", "Purchase"),
        "tags": ["invoice", "order"],
        "subjects": ["Invoice for monitors wrong", "Invoice doesn't match our order"],
        "bodies": [
            ("m", "The invoice {inv} for the monitors we ordered shows {n} units but we only received 4."),
            ("m", "Supplier invoice {inv} is {amount} but the purchase order was lower."),
        ],
        "answers": [
            "The supplier issued a credit note for the missing units.",
            "Matched the invoice to the PO; the supplier corrected the amount.",
        ],
    },
    {
        "cats": ("Hardware", "Network"),
        "tags": ["printer", "network"],
        "subjects": ["Printer not reachable on network", "printer offline for everyone"],
        "bodies": [
            ("m", "The {printer} on the {floor} floor doesn't show up on the network anymore, ping times out."),
            ("h", "Nobody in {dept} can print, the printer shows offline but it's switched on."),
        ],
        "answers": [
            "The printer had lost its static IP; reassigned it and it's back on the network.",
            "The switch port for the printer was disabled; re-enabled it and printing works.",
        ],
    },
    {
        "cats": ("Access", "Network"),
        "tags": ["shared-drive", "remote"],
        "subjects": ["Can't open shared drive from home", "shared drive access denied remotely"],
        "bodies": [
            ("m", "Can't open the {dept} shared drive when working from home, in the office it works."),
            ("m", "From home the shared drive says access denied, not sure if it's my rights or the VPN."),
        ],
        "answers": [
            "Your VPN profile was missing the route to the file server; fixed.",
            "Added you to the remote access group for the share.",
        ],
    },
    {
        "cats": ("Hardware", "Purchase"),
        "tags": ["docking-station"],
        "subjects": ["Docking station broken - order new?", "new docking station needed"],
        "bodies": [
            ("l", "My docking station is broken (USB ports dead). Can we order a new one or should IT repair it?"),
            ("m", "Dock stopped charging my {device}, I think it needs replacing."),
        ],
        "answers": [
            "New dock ordered; we'll swap it at your desk when it arrives.",
            "Replaced the dock with a spare from stock.",
        ],
    },
    {
        "cats": ("HR Support", "Access"),
        "tags": ["onboarding", "account"],
        "subjects": ["New hire needs laptop and accounts", "starter on {day} has no access"],
        "bodies": [
            (
                "h",
                "{manager} starts on {day} in {dept} and has no account and no laptop yet. Who handles this, HR or IT?",
            ),
            ("m", "Our new colleague can't log in to anything, HR said the contract is all set."),
        ],
        "answers": [
            "Account created and laptop prepared; ready for pickup on the first day.",
            "The start date was missing in the HR system; fixed it and the login was created.",
        ],
    },
    {
        "cats": ("Software", "Access"),
        "tags": ["outlook", "password"],
        "subjects": ["Outlook keeps asking for password", "password prompt loop in Outlook"],
        "bodies": [
            ("m", "Outlook keeps prompting for my password every few minutes even after I enter it correctly."),
            ("l", "Outlook asks for my password every morning, is that normal?"),
        ],
        "answers": [
            "Cleared the stored credentials in Credential Manager; the prompts stopped.",
            "Modern authentication was off for your profile; enabled it.",
        ],
    },
    {
        "cats": ("Billing", "Software"),
        "tags": ["subscription", "license"],
        "subjects": ["Charged but subscription not active", "paid but license still expired"],
        "bodies": [
            ("h", 'We were charged {amount} for the {app} subscription but the app still says "license expired".'),
            ("m", "Payment went through on {day} but {app} still shows the trial banner."),
        ],
        "answers": [
            "Payment matched to your account and the license reactivated.",
            "License key refreshed after the payment confirmation; please restart {app}.",
        ],
    },
    {
        "cats": ("HR Support", "Software"),
        "tags": ["benefits", "portal"],
        "subjects": ["Benefits portal error", "error submitting enrollment"],
        "bodies": [
            ("m", "The benefits portal shows error {code} when I try to submit my enrollment."),
            ("l", "Benefits site won't load my dependents page, just spins."),
        ],
        "answers": [
            "Known portal bug; submitted the enrollment on your behalf.",
            "Cleared the browser cache; the page loads now.",
        ],
    },
    {
        "cats": ("Hardware", "Software"),
        "tags": ["laptop", "performance"],
        "subjects": ["Laptop very slow after update", "{device} super slow"],
        "bodies": [
            ("m", "Since the last update my {device} is extremely slow and the fan runs all the time."),
            ("l", "laptop takes ages to boot lately, not sure if it's the disk or some program"),
        ],
        "answers": [
            "A stuck indexing service from the update caused it; fixed.",
            "The disk was failing; replaced the SSD and reimaged the laptop.",
        ],
    },
]


def make_slots(rng: random.Random) -> dict:
    """Pick one random value for every template slot.

    Args:
        rng: Seeded random generator.

    Returns:
        Mapping from slot name to filler text.
    """
    slots = {key: rng.choice(values) for key, values in FILLERS.items()}
    slots["inv"] = f"INV-{rng.randint(10000, 99999)}"
    slots["amount"] = f"${rng.randint(19, 2400)}.{rng.randint(0, 99):02d}"
    slots["n"] = str(rng.randint(2, 12))
    slots["num4"] = str(rng.randint(1000, 9999))
    slots["num5"] = str(rng.randint(10000, 99999))
    return slots


def pick_priority(rng: random.Random, hint: str) -> str:
    """Turn a template's priority hint into a (mostly matching) priority.

    Args:
        rng: Seeded random generator.
        hint: One of ``h``, ``m``, ``l``.

    Returns:
        The priority label.
    """
    base = HINTS[hint]
    roll = rng.random()
    if roll < 0.78:
        return base
    if base == "medium":
        return rng.choice(["high", "low"])
    return "medium" if roll < 0.96 else rng.choice([p for p in PRIORITIES if p not in (base, "medium")])


def add_typo(rng: random.Random, text: str) -> str:
    """Introduce one common misspelling, or swap two letters inside a longer word.

    Args:
        rng: Seeded random generator.
        text: Text to alter.

    Returns:
        The text with one typo.
    """
    words = text.split(" ")
    known = [i for i, w in enumerate(words) if w.lower() in TYPOS]
    if known:
        i = rng.choice(known)
        words[i] = TYPOS[words[i].lower()]
        return " ".join(words)
    long_words = [i for i, w in enumerate(words) if len(w) > 5 and w.isalpha()]
    if not long_words:
        return text
    i = rng.choice(long_words)
    w = words[i]
    j = rng.randint(1, len(w) - 3)
    words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    return " ".join(words)


def pick_modifier(rng: random.Random, priority: str) -> str:
    """Maybe pick an urgency phrase; usually it matches the priority, rarely it misleads.

    Args:
        rng: Seeded random generator.
        priority: The ticket's priority.

    Returns:
        A phrase, or an empty string.
    """
    if rng.random() < 0.05:
        return rng.choice(MODIFIERS[rng.choice([p for p in PRIORITIES if p != priority])])
    if rng.random() < MODIFIER_RATE[priority]:
        return rng.choice(MODIFIERS[priority])
    return ""


def compose_body(rng: random.Random, core: str, category: str, priority: str) -> tuple[str, str]:
    """Wrap a core body sentence with an optional greeting, details, urgency phrase and sign-off.

    Args:
        rng: Seeded random generator.
        core: The main body template.
        category: Category used to pick detail sentences.
        priority: Priority used to pick the urgency phrase.

    Returns:
        The body template without sign-off, and the sign-off template (may be empty).
    """
    if rng.random() < 0.2:
        return core, ""
    if core[-1] not in ".!?":
        core += "."
    parts = [rng.choice(OPENINGS), core]
    details = GENERIC_DETAILS + CATEGORY_DETAILS[category]
    n_details = 2 if rng.random() < 0.12 else int(rng.random() < 0.4)
    parts.extend(rng.sample(details, n_details))
    parts.append(pick_modifier(rng, priority))
    return " ".join(p for p in parts if p), rng.choice(CLOSINGS)


def compose_subject(rng: random.Random, template: str, priority: str) -> str:
    """Apply casual variations (prefixes, lower case) to a subject template.

    Args:
        rng: Seeded random generator.
        template: The subject template.
        priority: The ticket's priority.

    Returns:
        The subject template (slots still unfilled).
    """
    roll = rng.random()
    if priority == "high" and roll < 0.2:
        template = rng.choice(["URGENT: ", "urgent - ", "!! "]) + template
    elif priority == "low" and roll < 0.1:
        template = rng.choice(["Question: ", "Quick q: "]) + template
    elif roll > 0.96:
        template = "RE: " + template
    if rng.random() < 0.12:
        template = template.lower()
    return template


def make_tags(rng: random.Random, pool: list) -> str:
    """Pick 1-3 tags from a pool (sometimes none) and join them with ``;``.

    Args:
        rng: Seeded random generator.
        pool: Candidate tags.

    Returns:
        The joined tag string.
    """
    if rng.random() < 0.08:
        return ""
    k = rng.randint(1, min(3, len(pool)))
    return ";".join(rng.sample(pool, k))


def render(rng: random.Random, category: str, spec: dict) -> dict:
    """Build one ticket row from a template spec.

    The subject usually matches the chosen body (same index) and sometimes is another subject of the
    same intent; the answer always matches the body.

    Args:
        rng: Seeded random generator.
        category: The label to assign.
        spec: Template with ``tags``, ``subjects``, ``bodies`` and ``answers``.

    Returns:
        A row dict (without ticket_id).
    """
    slots = make_slots(rng)
    k = rng.randrange(len(spec["bodies"]))
    hint, core = spec["bodies"][k]
    priority = pick_priority(rng, hint)
    subject_tpl = spec["subjects"][k] if rng.random() < SUBJECT_MATCH else rng.choice(spec["subjects"])
    subject = compose_subject(rng, subject_tpl, priority).format(**slots)
    main_tpl, closing_tpl = compose_body(rng, core, category, priority)
    closing = closing_tpl.format(**slots)
    body = " ".join(p for p in (main_tpl.format(**slots), closing) if p)
    if rng.random() < 0.12:
        body = add_typo(rng, body)
    if rng.random() < 0.04:
        subject = add_typo(rng, subject)
    if rng.random() < 0.05:
        body = body.lower()
    answer = spec["answers"][k].format(**slots) if rng.random() < ANSWER_RATE else ""
    tags = make_tags(rng, spec["tags"])
    return {
        "subject": subject,
        "body": body,
        "tags": tags,
        "category": category,
        "priority": priority,
        "answer": answer,
        "_closing": closing,
    }


def render_intent(rng: random.Random, category: str) -> dict:
    """Build one row from a random intent of a category.

    Args:
        rng: Seeded random generator.
        category: Category whose intents to use (and the label).

    Returns:
        A row dict (without ticket_id).
    """
    return render(rng, category, rng.choice(INTENTS[category]))


def unique_row(rng: random.Random, seen: set, make) -> dict:
    """Call ``make`` until it returns a row whose subject+body has not been seen yet.

    Args:
        rng: Seeded random generator.
        seen: Set of (subject, body) pairs already used; updated in place.
        make: Callable taking ``rng`` and returning a row dict.

    Returns:
        A new, unique row.

    Raises:
        RuntimeError: If no unique row is found after many attempts.
    """
    for _ in range(200):
        row = make(rng)
        key = (row["subject"], row["body"])
        if key not in seen:
            seen.add(key)
            return row
    raise RuntimeError("could not generate a unique ticket")


def clean_rows(rng: random.Random, seen: set) -> list:
    """Generate the single-category rows.

    Args:
        rng: Seeded random generator.
        seen: Set of used (subject, body) pairs.

    Returns:
        List of row dicts.
    """
    rows = []
    for category, count in CLEAN_COUNTS.items():
        make = partial(render_intent, category=category)
        rows.extend(unique_row(rng, seen, make) for _ in range(count))
    return rows


def ambiguous_rows(rng: random.Random, seen: set) -> list:
    """Generate rows whose text mixes two categories, labelled with one of them.

    Args:
        rng: Seeded random generator.
        seen: Set of used (subject, body) pairs.

    Returns:
        List of row dicts flagged with ``_ambiguous``.
    """
    rows = []
    for i in range(N_AMBIGUOUS):
        spec = AMBIGUOUS[i % len(AMBIGUOUS)]
        row = unique_row(rng, seen, lambda r, s=spec: render(r, r.choice(s["cats"]), s))
        row["_ambiguous"] = True
        rows.append(row)
    return rows


def apply_noise(rng: random.Random, rows: list) -> None:
    """Flip the category of ~4% of rows and the priority of ~5% to another random value.

    Args:
        rng: Seeded random generator.
        rows: Rows to modify in place.
    """
    for i in rng.sample(range(len(rows)), round(CATEGORY_NOISE * len(rows))):
        rows[i]["category"] = rng.choice([c for c in CATEGORIES if c != rows[i]["category"]])
        rows[i]["_noise_category"] = True
    for i in rng.sample(range(len(rows)), round(PRIORITY_NOISE * len(rows))):
        rows[i]["priority"] = rng.choice([p for p in PRIORITIES if p != rows[i]["priority"]])
        rows[i]["_noise_priority"] = True


def add_pii(rng: random.Random, rows: list) -> None:
    """Insert a fake e-mail address or 555 phone number into a few bodies (before the sign-off).

    Args:
        rng: Seeded random generator.
        rows: Rows to modify in place.
    """
    for i, snippet in zip(rng.sample(range(len(rows)), len(PII_SNIPPETS)), PII_SNIPPETS, strict=True):
        body, closing = rows[i]["body"], rows[i]["_closing"]
        if closing and body.lower().endswith(closing.lower()):
            cut = len(body) - len(closing)
            rows[i]["body"] = f"{body[:cut]}{snippet} {body[cut:]}"
        else:
            rows[i]["body"] = f"{body} {snippet}"
        rows[i]["_pii"] = True


def add_duplicates(rng: random.Random, rows: list) -> list:
    """Insert exact copies of a few rows at random positions.

    Args:
        rng: Seeded random generator.
        rows: Rows to copy from.

    Returns:
        A new list including the duplicates.
    """
    candidates = [i for i, r in enumerate(rows) if not r.get("_pii")]
    copies = [dict(rows[i], _duplicate=True) for i in rng.sample(candidates, N_DUPLICATES)]
    out = list(rows)
    for copy in copies:
        out.insert(rng.randint(0, len(out)), copy)
    return out


def build_rows(seed: int = SEED) -> list:
    """Build the full, shuffled list of sample tickets with ticket ids.

    Args:
        seed: Random seed.

    Returns:
        List of row dicts (extra bookkeeping keys start with ``_``).
    """
    rng = random.Random(seed)
    seen: set = set()
    rows = clean_rows(rng, seen) + ambiguous_rows(rng, seen)
    rng.shuffle(rows)
    apply_noise(rng, rows)
    add_pii(rng, rows)
    rows = add_duplicates(rng, rows)
    for n, row in enumerate(rows, start=1):
        row["ticket_id"] = f"TCK-{n:05d}"
    return rows


# Rows a real export carries too, so that `make run` shows ingest keeping bad rows aside: empty text, a
# missing label, an id used twice, and a line with one field too many.
BAD_LINES = [
    "TCK-00421,,,,Hardware,low,",
    "TCK-00422,Cannot open the shared drive,The S: drive says access denied since this morning.,storage,,high,",
    "TCK-00007,Re: monitor flickers,Second monitor flickers again after the fix yesterday.,monitor,Hardware,medium,",
    "TCK-00423,VPN drops,VPN drops every ten minutes,vpn,Network,high,,extra field",
]


def write_csv(rows: list, path: Path) -> None:
    """Write rows to a UTF-8 CSV file with newline (LF) line endings, then the deliberately bad lines.

    Args:
        rows: Row dicts.
        path: Output file.
    """
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([row[c] for c in COLUMNS])
        f.writelines(line + "\n" for line in BAD_LINES)


def main() -> None:
    """Generate the sample dataset and print a short summary."""
    rows = build_rows()
    write_csv(rows, OUT_PATH)
    flags = ["_ambiguous", "_noise_category", "_noise_priority", "_pii", "_duplicate"]
    summary = ", ".join(f"{f.strip('_')}={sum(1 for r in rows if r.get(f))}" for f in flags)
    print(f"wrote {len(rows)} rows to {OUT_PATH} ({summary})")


if __name__ == "__main__":
    main()
