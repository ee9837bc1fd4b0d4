"""Word lists of the synthetic demo corpus (``synthetic.py``): companies, people, places,
products and filler sentence templates. Standard library only."""

_COMPANIES = (
    "Aldermoor Industries", "Brightwater Holdings", "Corvane Systems", "Dunmere Logistics",
    "Elstrand Energy", "Fernhollow Foods", "Galloway Robotics", "Hesketh Materials",
    "Ivorline Pharmaceuticals", "Juniper Ridge Telecom", "Kestrelmark Aerospace", "Lowmoor Textiles",
    "Marrowick Instruments", "Northgale Shipping", "Oakhurst Semiconductors", "Pellbrook Chemicals",
)
_UNITS = (
    "Aurora", "Basalt", "Cobalt", "Drumlin", "Ember", "Fjord", "Granite", "Harbor", "Iris",
    "Juniper", "Kestrel", "Lumen", "Meridian", "Nimbus", "Orchid", "Pinnacle", "Quartz", "Sable",
    "Tundra", "Vertex",
)
_FIRST = (
    "Ada", "Bruno", "Carla", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Keiko",
    "Lars", "Maya", "Nadia", "Omar", "Priya", "Quentin", "Rosa", "Sven", "Tamsin", "Ulrich",
    "Vera", "Wen", "Yusuf", "Zofia", "Amara", "Bjorn", "Chidi", "Dalia", "Emeka",
)
_LAST = (
    "Moreno", "Okafor", "Lindqvist", "Tanaka", "Haddad", "Kowalski", "Fischer", "Oyelaran",
    "Castellanos", "Novak", "Brennan", "Sato", "Petrov", "Adeyemi", "Lindgren", "Duarte",
    "Vasquez", "Whitcombe", "Nakamura", "Ferreira", "Halvorsen", "Mbeki", "Rossi", "Achterberg",
)
_CITIES = (
    ("Lisbon", "Portugal"), ("Rotterdam", "the Netherlands"), ("Gdansk", "Poland"),
    ("Tampere", "Finland"), ("Porto", "Portugal"), ("Leipzig", "Germany"), ("Lyon", "France"),
    ("Bilbao", "Spain"), ("Aarhus", "Denmark"), ("Brno", "Czechia"), ("Turin", "Italy"),
    ("Cork", "Ireland"), ("Graz", "Austria"), ("Ghent", "Belgium"), ("Bergen", "Norway"),
    ("Malmo", "Sweden"), ("Kaunas", "Lithuania"), ("Cluj-Napoca", "Romania"), ("Tartu", "Estonia"),
    ("Valencia", "Spain"), ("Osaka", "Japan"), ("Pune", "India"), ("Monterrey", "Mexico"),
    ("Curitiba", "Brazil"), ("Halifax", "Canada"), ("Dunedin", "New Zealand"),
)
_FACILITY_KINDS = ("assembly plant", "research centre", "distribution hub", "test laboratory", "service centre")
_PROJECTS = (
    "Project Lantern", "Project Tidewater", "Project Keystone", "Project Saltmarsh", "Project Halyard",
    "Project Windrose", "Project Ironbark", "Project Skylark", "Project Quillon", "Project Bramble",
)
_PRODUCTS = (
    "sensor modules", "control valves", "battery packs", "coated fabrics", "precision bearings",
    "cooling units", "signal amplifiers", "filtration membranes", "drive controllers", "optical lenses",
)
_TOPICS = (
    "energy prices", "interest rates", "freight costs", "wage inflation", "currency movements",
    "regulatory reviews", "component shortages", "customer demand", "supplier consolidation",
    "cyber security", "water usage", "staff retention",
)
_FILLER_TITLES = (
    "Market Environment", "Customers and Partners", "Supply Chain", "Research and Development",
    "People and Culture", "Sustainability", "Risk Management", "Digital Transformation",
    "Community Engagement", "Quality and Safety", "Procurement", "Information Technology",
    "Regulatory Affairs", "Investor Relations", "Innovation Programme", "Operational Excellence",
)
_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)
_ROLES = (
    "Chair", "Chief Executive Officer", "Chief Financial Officer", "Senior Independent Director",
    "Non-Executive Director", "Non-Executive Director", "Non-Executive Director", "Employee Representative",
)
_OPENERS = (
    "Meanwhile, ", "During the year, ", "As planned, ", "For the second year running, ", "In addition, ",
    "Later in the year, ", "Across the group, ", "By contrast, ", "At the same time, ", "As a result, ",
)
_FILLER_TEMPLATES = (
    "In {month}, the team in {city} completed the first phase of {project}.",
    "Management continued to monitor {topic} closely throughout the year.",
    "{person} presented the findings of the internal review to the steering committee in {month}.",
    "A pilot with a regional partner in {city} tested new {product} under field conditions.",
    "The company renewed {n} framework agreements with long-standing suppliers of {product}.",
    "Feedback from the annual engagement survey was discussed in {n} workshops across the group.",
    "{project} moved from design to testing after a review chaired by {person}.",
    "The {unit} division hosted a supplier day in {city} that focused on {topic}.",
    "Several teams adopted a shared planning calendar, which reduced duplicated work.",
    "An audit of the {city} office found no material weaknesses in the handling of {topic}.",
    "Training hours per employee rose by {pct} percent, driven by new courses on {topic}.",
    "The board received quarterly updates on {project} and on the exposure to {topic}.",
    "{person} joined the leadership team in {month} after {n} years in the industry.",
    "Customers in {country} asked for shorter delivery times for {product}.",
    "A new maintenance schedule cut unplanned downtime on the lines that make {product}.",
    "The company published an updated code of conduct in {month}.",
    "Volunteers from the {city} office supported {n} local schools with science days.",
    "Work on {project} is expected to continue into the next financial year.",
    "The {unit} division shared its lessons on {topic} with the rest of the group.",
    "Independent consultants reviewed the controls around {topic} and suggested {n} improvements.",
    "Demand for {product} was uneven, with a slow first half and a stronger second half.",
    "{person} led a cross-functional group that simplified the approval of small purchases.",
    "A storm in {month} briefly interrupted deliveries from the port near {city}.",
    "Suppliers of {product} were asked to report their emissions using a common template.",
    "The group replaced {n} legacy applications with a single reporting platform.",
    "Recruitment in {city} focused on engineers with experience in {product}.",
    "The internal innovation fund backed {n} ideas submitted by employees.",
    "A review of {topic} concluded that current provisions remain adequate.",
    "In {month}, the company opened a small visitor gallery explaining how {product} are made.",
    "Teams in {country} introduced a mentoring scheme for apprentices.",
    "{project} received a grant from a regional development agency.",
    "Lead times for {product} improved after the warehouse layout in {city} was redesigned.",
    "The company took part in {n} industry conferences, presenting work on {topic}.",
    "Packaging for {product} now uses {pct} percent recycled material.",
    "Meetings of the risk committee paid particular attention to {topic}.",
    "{person} was appointed to coordinate the response to changes in {topic}.",
    "Field engineers logged {n} service visits to customers who use {product}.",
    "The {unit} division trialled remote inspections of equipment in {country}.",
    "A dedicated help desk answered questions from suppliers about {project}.",
    "Energy audits at the {city} office identified simple savings in lighting and heating.",
)
